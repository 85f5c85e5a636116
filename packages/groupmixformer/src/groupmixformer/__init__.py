"""GroupMixFormer (Group-Mix Attention) as released: timm models, mmseg backbone, trainer."""

from __future__ import annotations

import importlib.util
import logging

from groupmixformer._version import __version__
from groupmixformer.checkpoint import checkpoint_filter_fn, load_checkpoint, save_checkpoint
from groupmixformer.config import EXPECTED, PUBLISHED, VARIANTS, GroupMixFormerConfig, get_config
from groupmixformer.models import GroupMixFormer, create_groupmixformer
from groupmixformer.models.groupmixformer import GroupMixAttention, factorized_attention

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

logger = logging.getLogger(__name__)


def _register_integrations() -> None:
    """Register with timm (and mmseg when installed); the core model works without either."""
    try:
        import groupmixformer.timm_models  # noqa: F401
    except ImportError as err:  # timm or its torchvision import is unavailable
        logger.debug("timm registration skipped: %s", err)
    if importlib.util.find_spec("mmseg") is None:
        return
    try:
        import groupmixformer.mmseg_backbone  # noqa: F401
    except (ImportError, OSError) as err:  # e.g. mmcv without its compiled ops
        logger.debug("mmseg registration skipped: %s", err)


_register_integrations()
