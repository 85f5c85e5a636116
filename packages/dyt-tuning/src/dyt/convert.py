"""Checkpoints: official DyT files (strict), pre-trained timm backbones, and our adapter files.

The official code saves ``{"model": state_dict, ...}`` with timm ViT keys plus
``blocks.{i}.adaptmlp.*`` and ``blocks.{i}.mlp_token_select.mlp_head.*``; our models use the same
names, so no key mapping is needed and loading is strict.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from dyt.config import DyTConfig
from dyt.models.dyt_vit import trainable_state_dict
from papers_shared.checkpoint import (
    KeyReport,
    load_state_dict_checked,
    read_state_dict,
    save_safetensors,
)

__all__ = [
    "load_official_checkpoint",
    "load_backbone",
    "save_official_checkpoint",
    "save_adapter",
    "load_adapter",
    "ADAPTER_FILE",
    "CONFIG_FILE",
]

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.json"
# Keys of pre-trained classifier layers that a fine-tuning run replaces.
_BACKBONE_DROP_PREFIXES = ("head.", "pre_logits.")
_DYT_PREFIXES = (
    "adaptmlp.",
    "mlp_token_select.",
    "adaptattn.",
    "attn_token_select.",
    "adaptlayer.",
    "layer_token_select.",
)


def _state(source: str | Path | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(source) if isinstance(source, dict) else read_state_dict(source)


def load_official_checkpoint(
    model: nn.Module, source: str | Path | dict[str, torch.Tensor]
) -> KeyReport:
    """Load a checkpoint written by the official DyT code (``{"model": sd}`` or a bare sd), strictly."""
    return load_state_dict_checked(model, _state(source), source=str(source)[:200])


def save_official_checkpoint(model: nn.Module, path: str | Path, **extra: object) -> Path:
    """Save ``{"model": state_dict, **extra}`` in the official layout (a .pth file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), **extra}, path)
    return path


def load_backbone(model: nn.Module, source: str | Path | dict[str, torch.Tensor]) -> KeyReport:
    """Load pre-trained ViT weights (e.g. timm ``vit_base_patch16_224.orig_in21k``) into a DyT model.

    The classifier (``head.*``, ``pre_logits.*``) is dropped as in the official code; DyT modules
    and the head may be missing; the position embedding is resampled if the grid differs.
    """
    state = {k: v for k, v in _state(source).items() if not k.startswith(_BACKBONE_DROP_PREFIXES)}
    own = model.state_dict()
    if (
        "pos_embed" in state
        and "pos_embed" in own
        and state["pos_embed"].shape != own["pos_embed"].shape
    ):
        prefix = 0 if getattr(model, "no_embed_class", False) else int(model.num_prefix_tokens)
        old_patches = state["pos_embed"].shape[1] - prefix
        old_side = int(round(old_patches**0.5))
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"],
            new_size=list(model.patch_embed.grid_size),
            old_size=[old_side, old_side],
            num_prefix_tokens=prefix,
        )
    missing_ok = tuple(
        name
        for name in own
        if name.startswith("head.") or any(f".{p}" in name for p in _DYT_PREFIXES)
    )
    report = load_state_dict_checked(
        model, state, allow_missing=missing_ok or ("head.",), source=str(source)[:200]
    )
    logger.info("loaded backbone: %d missing (new) keys", len(report.missing))
    return report


def save_adapter(model: nn.Module, directory: str | Path) -> Path:
    """Save only the trained tensors (safetensors) plus ``config.json`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config: DyTConfig = model.dyt_config
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return save_safetensors(trainable_state_dict(model), directory / ADAPTER_FILE)


def load_adapter(model: nn.Module, directory: str | Path) -> KeyReport:
    """Load tensors saved by :func:`save_adapter`; every trainable tensor must be present."""
    directory = Path(directory)
    path = directory / ADAPTER_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no {ADAPTER_FILE} in {directory} (write one with dyt.save_adapter)"
        )
    state = read_state_dict(path)
    frozen = tuple(k for k in model.state_dict() if k not in trainable_state_dict(model))
    return load_state_dict_checked(model, state, allow_missing=frozen, source=str(path))
