"""Loading the released checkpoints (``{'model': state_dict}``, official key names).

Our modules use the official names, so no key is renamed: the loader only unwraps common
containers (``model`` / ``state_dict`` / ``module.``) and drops the classifier when it is unused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from groupmixformer.models.groupmixformer import GroupMixFormer
from papers_shared.checkpoint import (
    KeyReport,
    load_state_dict_checked,
    read_state_dict,
    unwrap_state_dict,
)

__all__ = ["CLASSIFIER_PREFIXES", "checkpoint_filter_fn", "load_checkpoint", "save_checkpoint"]

logger = logging.getLogger(__name__)

CLASSIFIER_PREFIXES = ("norm4.", "head.")


def checkpoint_filter_fn(
    state_dict: Mapping[str, object], model: GroupMixFormer
) -> dict[str, torch.Tensor]:
    """Unwrap a released checkpoint and keep the keys ``model`` can take (timm's filter hook).

    A backbone-only model drops ``norm4.*`` / ``head.*``; a model with ``num_classes=0`` drops
    ``head.*``. Every other key is passed through unchanged.
    """
    state = unwrap_state_dict(dict(state_dict))
    if getattr(model, "backbone_only", False):
        return {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    if getattr(model, "num_classes", 1) == 0:
        return {k: v for k, v in state.items() if not k.startswith("head.")}
    return state


def load_checkpoint(
    model: GroupMixFormer, path: str | Path, *, reset_head: bool = False
) -> KeyReport:
    """Load a released (or our) checkpoint file into ``model`` strictly.

    ``model.backbone_only``: ``norm4.*``/``head.*`` are allowed as unexpected and nothing else may
    be off. ``reset_head=True``: the checkpoint's head is skipped (use when ``num_classes`` differs;
    the model keeps its freshly initialised head). Raises ``CheckpointMismatchError`` otherwise.
    """
    state = read_state_dict(path)
    allow_unexpected: tuple[str, ...] = ()
    allow_missing: tuple[str, ...] = ()
    if model.backbone_only:
        allow_unexpected = CLASSIFIER_PREFIXES
    elif reset_head or model.num_classes == 0:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        allow_missing = ("head.",)
    report = load_state_dict_checked(
        model,
        state,
        allow_missing=allow_missing,
        allow_unexpected=allow_unexpected,
        source=str(path),
    )
    if not report.ok:
        logger.info("loaded %s with expected differences: %s", path, report.describe())
    return report


def save_checkpoint(model: GroupMixFormer, path: str | Path) -> Path:
    """Save in the released format, ``{'model': state_dict}`` (fp32 tensors)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)
    return path
