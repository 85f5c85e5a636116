"""GroupMixFormer model definitions and the ``create_groupmixformer`` factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from groupmixformer.config import get_config
from groupmixformer.models.groupmixformer import GroupMixFormer

__all__ = ["GroupMixFormer", "create_groupmixformer"]


def create_groupmixformer(
    name: str,
    *,
    checkpoint_path: str | Path | None = None,
    backbone_only: bool = False,
    **overrides: Any,
) -> GroupMixFormer:
    """Build a released variant (``"small"``, ``"groupmixformer_small"`` or ``"s"``), with config
    fields overridden (e.g. ``num_classes=10, in_chans=1``), optionally loading a checkpoint file
    strictly (a different ``num_classes`` keeps the new head)."""
    config = get_config(name, **overrides)
    model = GroupMixFormer.from_config(config, backbone_only=backbone_only)
    if checkpoint_path is not None:
        from groupmixformer.checkpoint import load_checkpoint

        default_classes = get_config(name).num_classes
        load_checkpoint(model, checkpoint_path, reset_head=config.num_classes != default_classes)
    return model
