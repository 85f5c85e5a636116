"""AVID checkpoints (user-supplied files; nothing is downloaded) -> our AVModel.

AVID saves ``{"model": {"module.video_model.conv1.0.weight": ..., ...}, "optimizer": ..., ...}``.
Our modules carry AVID's names, so conversion is: take ``model``, strip ``module.``, keep the four
sub-networks (267 tensors for R(2+1)D-18 + Conv2D-10 + two heads).
"""

from __future__ import annotations

from pathlib import Path

import torch

from papers_shared.checkpoint import KeyReport, load_state_dict_checked, read_state_dict
from softinfonce.models.avid import AVModel

__all__ = ["AVID_PREFIXES", "avid_filter_fn", "load_avid_checkpoint", "to_avid_checkpoint"]

AVID_PREFIXES = ("video_model.", "audio_model.", "video_proj.", "audio_proj.")


def avid_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the encoder and head tensors of an unwrapped AVID state dict."""
    kept = {k: v for k, v in state_dict.items() if k.startswith(AVID_PREFIXES)}
    if not kept:
        raise ValueError(
            f"no AVID encoder keys (expected prefixes {AVID_PREFIXES}); first keys: {sorted(state_dict)[:5]}"
        )
    return kept


def load_avid_checkpoint(model: AVModel, path: str | Path, *, heads: bool = True) -> KeyReport:
    """Load an AVID ``.pth`` (or one of our safetensors) into ``model``, strictly.

    ``heads=False`` loads only the two backbones (for fine-tuning).
    """
    state = read_state_dict(path, key_map=avid_filter_fn)
    allow: tuple[str, ...] = ()
    if not heads:
        state = {k: v for k, v in state.items() if not k.startswith(("video_proj.", "audio_proj."))}
        allow = ("video_proj.", "audio_proj.")
    return load_state_dict_checked(model, state, allow_missing=allow, source=str(path))


def to_avid_checkpoint(model: AVModel) -> dict[str, dict[str, torch.Tensor]]:
    """Our weights in AVID's layout (``{"model": {"module.<key>": tensor}}``)."""
    return {"model": {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()}}
