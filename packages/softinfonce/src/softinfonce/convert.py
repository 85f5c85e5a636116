"""AVID checkpoints (user-supplied files; nothing is downloaded) -> our AVModel.

AVID saves ``{"model": {"module.video_model.conv1.0.weight": ..., ...}, "optimizer": ..., ...}``.
Our modules carry AVID's names, so conversion is: take ``model``, strip ``module.``, keep the four
sub-networks (267 tensors for R(2+1)D-18 + Conv2D-10 + two heads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from papers_shared.checkpoint import (
    KeyReport,
    load_state_dict_checked,
    read_state_dict,
    save_safetensors,
)
from softinfonce.models.avid import AVModel

if TYPE_CHECKING:
    from softinfonce.config import PretrainConfig

__all__ = [
    "AVID_PREFIXES",
    "avid_filter_fn",
    "load_avid_checkpoint",
    "save_converted",
    "to_avid_checkpoint",
]

AVID_PREFIXES = ("video_model.", "audio_model.", "video_proj.", "audio_proj.")


def avid_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the encoder and head tensors of an unwrapped AVID state dict."""
    kept = {k: v for k, v in state_dict.items() if k.startswith(AVID_PREFIXES)}
    if not kept:
        raise ValueError(
            f"no AVID encoder keys (expected prefixes {AVID_PREFIXES}); first keys: {sorted(state_dict)[:5]}"
        )
    return kept


def load_avid_checkpoint(
    model: AVModel, path: str | Path, *, heads: bool = True, trust_checkpoint: bool = False
) -> KeyReport:
    """Load an AVID ``.pth`` (or one of our safetensors) into ``model``, strictly.

    ``heads=False`` loads only the two backbones (for fine-tuning). The file is read without
    running code stored in it (``weights_only``; AVID's extra entries such as its argparse
    ``Namespace`` are allowed); ``trust_checkpoint=True`` unpickles everything, for files from a
    source you trust.
    """
    state = read_state_dict(path, key_map=avid_filter_fn, trust_checkpoint=trust_checkpoint)
    allow: tuple[str, ...] = ()
    if not heads:
        state = {k: v for k, v in state.items() if not k.startswith(("video_proj.", "audio_proj."))}
        allow = ("video_proj.", "audio_proj.")
    return load_state_dict_checked(model, state, allow_missing=allow, source=str(path))


def to_avid_checkpoint(model: AVModel) -> dict[str, dict[str, torch.Tensor]]:
    """Our weights in AVID's layout (``{"model": {"module.<key>": tensor}}``)."""
    return {"model": {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()}}


def save_converted(
    model: AVModel, config: PretrainConfig, output_dir: str | Path, *, overwrite: bool = False
) -> Path:
    """``model.safetensors`` (AVID key names) + ``config.json`` in ``output_dir``, the folder
    ``softinfonce extract --checkpoint`` reads. Refuses a folder that already holds weights
    unless ``overwrite``."""
    out = Path(output_dir)
    weights = out / "model.safetensors"
    if weights.exists() and not overwrite:
        raise FileExistsError(
            f"{weights} already exists; pass overwrite=True (--overwrite) or choose another folder"
        )
    save_safetensors(model.state_dict(), weights)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return out
