"""GroupMixFormer model definitions, their timm registration and ``create_groupmixformer``.

Importing this module registers ``groupmixformer_{miny,tiny,small,base,large}`` in timm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from groupmixformer.config import get_config
from groupmixformer.models.groupmixformer import (
    GroupMixAttention,
    GroupMixFormer,
    checkpoint_filter_fn,
    factorized_attention,
)

__all__ = [
    "GroupMixAttention",
    "GroupMixFormer",
    "checkpoint_filter_fn",
    "create_groupmixformer",
    "factorized_attention",
]


def create_groupmixformer(
    name: str,
    *,
    checkpoint_path: str | Path | None = None,
    backbone_only: bool = False,
    trust_checkpoint: bool = False,
    **overrides: Any,
) -> GroupMixFormer:
    """Build a released variant (``"small"``, ``"groupmixformer_small"`` or ``"s"``), with config
    fields overridden (e.g. ``num_classes=10, in_chans=1``), optionally loading a checkpoint file
    strictly (a different ``num_classes`` keeps the new head)."""
    config = get_config(name, **overrides)
    model = GroupMixFormer.from_config(config, backbone_only=backbone_only)
    if checkpoint_path is not None:
        from groupmixformer.convert import load_checkpoint

        default_classes = get_config(name).num_classes
        load_checkpoint(
            model,
            checkpoint_path,
            reset_head=config.num_classes != default_classes,
            trust_checkpoint=trust_checkpoint,
        )
    return model
