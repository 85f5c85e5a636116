"""Checkpoints: official DyT files (strict), pre-trained timm backbones, and our adapter files.

The official training scripts save ``{"model": state_dict, "args": Namespace, ...}`` with timm
ViT keys plus ``blocks.{i}.adaptmlp.*`` and ``blocks.{i}.mlp_token_select.mlp_head.*``. A
converted ViT uses the same names, so image checkpoints load strictly without mapping; the video
model keeps its ViT under ``backbone.`` (:func:`official_video_to_ours`). Files are read without
running code from them (``trust_checkpoint=True`` allows full unpickling, see
``papers_shared.checkpoint``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm.layers.pos_embed as timm_pos_embed
import torch
from torch import nn

from dyt.models.dispatch import get_dyt_config, trainable_state_dict
from dyt.models.video import DyTVideoTransformer
from papers_shared.checkpoint import (
    KeyReport,
    load_state_dict_checked,
    read_state_dict,
    save_safetensors,
    unwrap_state_dict,
)

__all__ = [
    "load_official_checkpoint",
    "load_backbone",
    "official_video_to_ours",
    "ours_video_to_official",
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


_VIDEO_TOP_LEVEL = ("query_token", "attentive_blocks.", "head.")
Source = str | Path | Mapping[str, Any]


def _state(source: Source, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """A flat state dict from a file or an in-memory dict (bare, or under "model" / "state_dict"
    / "module")."""
    if isinstance(source, Mapping):
        return dict(unwrap_state_dict(dict(source), source="the given dict"))
    return read_state_dict(source, trust_checkpoint=trust_checkpoint)


def _source_name(source: Source) -> str:
    return "the given dict" if isinstance(source, Mapping) else str(source)


def official_video_to_ours(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official video keys -> :class:`DyTVideoTransformer` keys: ViT keys move under ``backbone.``."""
    return {(k if k.startswith(_VIDEO_TOP_LEVEL) else f"backbone.{k}"): v for k, v in state.items()}


def ours_video_to_official(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`official_video_to_ours`."""
    return {k.removeprefix("backbone."): v for k, v in state.items()}


def _describe(model: nn.Module) -> str:
    config = get_dyt_config(model)
    vit = model.backbone if isinstance(model, DyTVideoTransformer) else model
    blocks = [m for m in vit.modules() if hasattr(m, "mlp_token_select")]
    width = getattr(vit, "embed_dim", getattr(vit, "num_features", "?"))
    return (
        f"a DyT model with {len(blocks)} blocks, width {width}, bottleneck {config.bottleneck}, "
        f"{config.num_experts} adapter expert(s)"
    )


def _official_variants() -> dict[str, dict[str, tuple[int, ...]]]:
    """Key shapes of the paper's ViT configurations (built on the meta device)."""
    import timm

    from dyt.models.dyt_vit import convert_vit

    variants = {}
    for backbone, label in (
        ("vit_base_patch16_224", "ViT-B/16"),
        ("vit_large_patch16_224", "ViT-L/16"),
    ):
        for bottleneck in (8, 16, 64):
            with torch.device("meta"):
                vit = timm.create_model(backbone, pretrained=False, num_classes=100)
            model = convert_vit(vit, bottleneck=bottleneck)
            shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            variants[f"DyT {label} bottleneck {bottleneck}"] = shapes
    return variants


def load_official_checkpoint(
    model: nn.Module, source: Source, *, trust_checkpoint: bool = False
) -> KeyReport:
    """Load a checkpoint written by the official DyT code, strictly.

    ``source``: a file (``{"model": sd, "args": ..., ...}`` or a bare state dict) or an in-memory
    dict (bare, or wrapped as ``{"model": ...}`` / ``{"state_dict": ...}`` / ``{"module": ...}``).
    A file for another variant fails with one line naming the closest paper configuration.
    """
    state = _state(source, trust_checkpoint)
    if isinstance(model, DyTVideoTransformer):
        state = official_video_to_ours(state)
    own = set(model.state_dict())
    matches = len(own & set(state))
    variants = _official_variants() if matches < len(own) or len(state) != len(own) else None
    return load_state_dict_checked(
        model, state, source=_source_name(source)[:200], expected=_describe(model),
        variants=variants,
    )  # fmt: skip


def save_official_checkpoint(model: nn.Module, path: str | Path, **extra: object) -> Path:
    """Save ``{"model": state_dict, **extra}`` in the official layout (a .pth file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    if isinstance(model, DyTVideoTransformer):
        state = ours_video_to_official(state)
    torch.save({"model": state, **extra}, path)
    return path


def _to_model_keys(state: dict[str, torch.Tensor], own: Mapping[str, Any]) -> dict:
    """Plain timm keys -> a converted model's keys (DyT Swin blocks hold the timm block as
    ``base_layer``; ViT keys are unchanged)."""
    mapped = {}
    for key, value in state.items():
        if key not in own:
            candidate = re.sub(r"^(.*\.blocks\.\d+\.)", r"\1base_layer.", key)
            key = candidate if candidate in own else key
        mapped[key] = value
    return mapped


def load_backbone(model: Any, source: Source, *, trust_checkpoint: bool = False) -> KeyReport:
    """Load pre-trained ViT / Swin weights (e.g. timm ``vit_base_patch16_224.orig_in21k``) into a
    DyT model.

    The classifier (``head.*``, ``pre_logits.*``) is dropped as in the official code; DyT modules
    and the head may be missing; the position embedding is resampled if the grid differs.
    """
    if isinstance(model, DyTVideoTransformer):
        return load_backbone(model.backbone, source, trust_checkpoint=trust_checkpoint)
    raw = _state(source, trust_checkpoint)
    state = {k: v for k, v in raw.items() if not k.startswith(_BACKBONE_DROP_PREFIXES)}
    own = model.state_dict()
    state = _to_model_keys(state, own)
    if (
        "pos_embed" in state
        and "pos_embed" in own
        and state["pos_embed"].shape != own["pos_embed"].shape
    ):
        prefix = 0 if getattr(model, "no_embed_class", False) else int(model.num_prefix_tokens)
        old_patches = state["pos_embed"].shape[1] - prefix
        old_side = int(round(old_patches**0.5))
        resample: Any = timm_pos_embed.resample_abs_pos_embed  # torch.fx.wrap hides its type
        state["pos_embed"] = resample(
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
        model, state, allow_missing=missing_ok or ("head.",), source=_source_name(source)[:200]
    )
    logger.info("loaded backbone: %d missing (new) keys", len(report.missing))
    return report


def save_adapter(model: nn.Module, directory: str | Path) -> Path:
    """Save only the trained tensors (safetensors) plus ``config.json`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = get_dyt_config(model)
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
