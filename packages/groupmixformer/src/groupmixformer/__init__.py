"""GroupMixFormer (Group-Mix Attention) as released: timm models, mmseg backbone, trainer.

``import groupmixformer`` is cheap (no torch): the model names below load on first use.
Importing ``groupmixformer.models`` (which any of those names does) registers the timm models
``groupmixformer_{miny,tiny,small,base,large}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from groupmixformer._version import __version__
from groupmixformer.config import EXPECTED, PUBLISHED, VARIANTS, GroupMixFormerConfig, get_config
from papers_shared.lazy import lazy_exports

if TYPE_CHECKING:
    from groupmixformer.convert import load_checkpoint, save_checkpoint
    from groupmixformer.models import (
        GroupMixAttention,
        GroupMixFormer,
        checkpoint_filter_fn,
        create_groupmixformer,
        factorized_attention,
    )

__all__ = [
    "__version__",
    "GroupMixFormer",
    "GroupMixFormerConfig",
    "GroupMixAttention",
    "VARIANTS",
    "PUBLISHED",
    "EXPECTED",
    "get_config",
    "create_groupmixformer",
    "factorized_attention",
    "checkpoint_filter_fn",
    "load_checkpoint",
    "save_checkpoint",
]

_LAZY = {
    "GroupMixFormer": "groupmixformer.models",
    "GroupMixAttention": "groupmixformer.models",
    "checkpoint_filter_fn": "groupmixformer.models",
    "create_groupmixformer": "groupmixformer.models",
    "factorized_attention": "groupmixformer.models",
    "load_checkpoint": "groupmixformer.convert",
    "save_checkpoint": "groupmixformer.convert",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
