"""Parameter and FLOP counts of the AVID-compatible variants beside the AVID networks' figures."""

from __future__ import annotations

import torch

from papers_shared.counting import FLOP_CONVENTION, count_flops, count_parameters
from papers_shared.methods import Table
from softinfonce.models.avid import (
    ProjectionHead,
    audio_conv2d_10,
    create_av_model,
    r2plus1d_18_avid,
)

__all__ = ["info_tables"]


def _gflops(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """GFLOPs (multiply-adds) of one forward, counted on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        return count_flops(model.eval(), torch.empty(shape)).gflops


def info_tables() -> list[Table]:
    with torch.device("meta"):
        video, audio, head, full = (
            r2plus1d_18_avid(),
            audio_conv2d_10(),
            ProjectionHead(),
            create_av_model(),
        )
    rows = [
        [
            "R(2+1)D-18 (AVID) backbone",
            count_parameters(video).total,
            15_379_136,
            f"{_gflops(video, (1, 3, 8, 112, 112)):.2f} G @8x112^2 / {_gflops(video, (1, 3, 8, 224, 224)):.2f} G @8x224^2",
            "3.08 G / 12.13 G",
        ],
        [
            "Conv2D-10 audio",
            count_parameters(audio).total,
            4_725_696,
            f"{_gflops(audio, (1, 1, 200, 257)):.2f} G @200x257",
            "1.44 G",
        ],
        ["projection head 512-512-128", count_parameters(head).total, 590_976, "-", "-"],
        ["full AV model", count_parameters(full).total, 21_286_784, "-", "-"],
    ]
    return [
        Table(
            headers=["variant", "params (ours)", "params (AVID)", "GFLOPs (ours)", "GFLOPs (AVID)"],
            rows=rows,
            title="softinfonce encoders (AVID-compatible)",
            notes=[
                "The paper released no code or weights; the reference figures are counts of the "
                "AVID networks (Morgado et al., CVPR 2021) that the paper builds on.",
                "The AVID GFLOPs count convolutions only; ours also count the BatchNorm layers "
                "(about 0.3 % more).",
                FLOP_CONVENTION,
            ],
        )
    ]
