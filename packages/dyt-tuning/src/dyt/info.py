"""``dyt info``: parameters and FLOPs per configuration beside the paper's figures."""

from __future__ import annotations

import math
from typing import Any

import timm
import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from dyt.flops import ViTDims, dyt_flops
from dyt.models.dyt_swin import convert_swin, swin_flops
from dyt.models.dyt_vit import convert_vit
from papers_shared.counting import FLOP_CONVENTION
from papers_shared.methods import Table

__all__ = ["info"]

# (label, backbone, DyT overrides or None for plain fine-tuning, paper extra params M, paper GFLOPs)
_ROWS: list[tuple[str, str, dict | None, str, str]] = [
    ("Full fine-tuning ViT-B/16", "vit_base_patch16_224", None, "85.8 (all)", "17.58"),
    ("AdaptFormer d=8 (DyT complete)", "vit_base_patch16_224", dict(bottleneck=8, rate=1.0),
     "0.16", "17.61"),
    ("DyT VTAB d=8 r=0.5", "vit_base_patch16_224", dict(bottleneck=8, rate=0.5), "0.16", "12.54"),
    ("DyT VTAB d=8 r=0.7", "vit_base_patch16_224", dict(bottleneck=8, rate=0.7), "0.16", "14.92"),
    ("DyT VTAB d=8 r=0.9", "vit_base_patch16_224", dict(bottleneck=8, rate=0.9), "0.16", "17.07"),
    ("DyT d=64 r=0.5 (full image sets)", "vit_base_patch16_224", dict(bottleneck=64, rate=0.5),
     "1.19", "12.21"),
    ("DyT-MoE N=4 d=64 r=0.5", "vit_base_patch16_224",
     dict(bottleneck=64, rate=0.5, num_experts=4), "4.80", "12.29"),
    ("Attn dispatch d=64 r=0.5 (exp.)", "vit_base_patch16_224",
     dict(bottleneck=64, rate=0.5, dispatch="attn"), "1.19", "14.77"),
    ("Attn-MLP dispatch d=64 r=0.7 (exp.)", "vit_base_patch16_224",
     dict(bottleneck=64, rate=0.7, dispatch="attn_mlp"), "2.38", "12.93"),
    ("Layer dispatch d=64 r=0.7 (exp.)", "vit_base_patch16_224",
     dict(bottleneck=64, rate=0.7, dispatch="layer"), "1.19", "13.08"),
    ("DyT ViT-L d=64 r=0.5", "vit_large_patch16_224", dict(bottleneck=64, rate=0.5), "3.17", "43.79"),
    ("DyT ViT-L VTAB d=8 r=0.5", "vit_large_patch16_224", dict(bottleneck=8, rate=0.5),
     "0.44", "43.52"),
    ("DyT Swin-B d=64 r=0.5", "swin_base_patch4_window7_224", dict(bottleneck=64, rate=0.5),
     "1.55", "13.25"),
]  # fmt: skip


def _meta_model(backbone: str, overrides: dict | None) -> Any:
    with torch.device("meta"):
        model = timm.create_model(backbone, pretrained=False, num_classes=100)
    if overrides is None:
        return model
    return (convert_swin if "swin" in backbone else convert_vit)(model, **overrides)


def _extra_params(model: nn.Module, overrides: dict | None) -> int:
    if overrides is None:
        return sum(p.numel() for p in model.parameters())
    return sum(
        p.numel() for n, p in model.named_parameters() if "adapt" in n or "token_select" in n
    )


def _nominal_gflops(model: Any, overrides: dict | None) -> float:
    """GFLOPs with exactly a fraction r of the dispatchable tokens active everywhere."""
    if isinstance(model, SwinTransformer):
        stages: Any = model.layers
        blocks = [getattr(b, "base_layer", b) for stage in stages for b in stage.blocks]
        rate = 1.0 if overrides is None else overrides["rate"]
        return swin_flops(model, [rate * math.prod(b.input_resolution) for b in blocks]).gflops
    dims = ViTDims.from_model(model)
    if overrides is None:
        return dyt_flops(dims).gflops
    dispatch = overrides.get("dispatch", "mlp")
    dispatchers = 2 * dims.depth if dispatch == "attn_mlp" else dims.depth
    active = [overrides["rate"] * dims.num_patches] * dispatchers
    return dyt_flops(dims, overrides["bottleneck"], active, dispatch).gflops


def info() -> list[Table]:
    """One table: extra parameters (ours, counted) and GFLOPs at the nominal rate vs the paper."""
    rows = []
    for label, backbone, overrides, paper_params, paper_gflops in _ROWS:
        model = _meta_model(backbone, overrides)
        params = _extra_params(model, overrides)
        gflops = _nominal_gflops(model, overrides)
        rows.append([
            label, f"{params / 1e6:.3f}", paper_params,
            f"{gflops:.2f}", paper_gflops,
        ])  # fmt: skip
    return [
        Table(
            title="DyT: extra parameters and GFLOPs (224x224, 100 classes; one multiply-add = "
            "one FLOP)",
            headers=["configuration", "extra params M (ours)", "paper", "GFLOPs at r (ours)",
                     "paper GFLOPs"],
            rows=rows,
            notes=[
                FLOP_CONVENTION + ".",
                "Extra params = adapters + token dispatchers (+ MoE routers), counted on meta models.",
                "Our GFLOPs assume exactly r*196 active patch tokens in every layer; the paper's "
                "figures come from trained eval masks, whose rate differs from r (see dyt.eval_flops for mask-driven counts).",
                "Attention / layer dispatch (experimental): skipped tokens are neither queries "
                "nor keys, so attention costs 5aC + 4aC^2 + 2a^2C for a active tokens (packed "
                "eval path); the paper used r=0.5 for attention, 0.7 for attention-MLP and layer.",
                "Swin-B (paper-based, no reference code): every token can be skipped (no class "
                "token); window attention counted on the padded grid (dyt.models.dyt_swin.swin_flops)"
                "; under this count the paper's 13.25 G would mean about 73% of the tokens active.",
            ],
        )
    ]  # fmt: skip
