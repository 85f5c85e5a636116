"""Official checkpoints: loading the released ``{'model': state_dict}`` files, and writing them.

The released files already use our module names (the model is written to match them), so no key
is renamed: loading unwraps common containers (``model`` / ``state_dict`` / ``module.``) and drops
the classifier where it is unused. Files are read without running code from them
(``papers_shared.checkpoint``); ``trust_checkpoint=True`` allows full unpickling.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from groupmixformer.config import VARIANTS
from groupmixformer.models.groupmixformer import GroupMixFormer
from papers_shared.checkpoint import (
    CheckpointMismatchError,
    KeyReport,
    load_state_dict_checked,
    read_state_dict,
)

__all__ = ["CLASSIFIER_PREFIXES", "load_checkpoint", "save_checkpoint", "variant_shapes"]

logger = logging.getLogger(__name__)

CLASSIFIER_PREFIXES = ("norm4.", "head.")


@functools.cache
def variant_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """{timm name: {key: shape}} of the five released variants (built on the meta device)."""
    shapes = {}
    for name, config in VARIANTS.items():
        with torch.device("meta"):
            model = GroupMixFormer.from_config(config)
        shapes[f"groupmixformer_{name}"] = {
            k: tuple(v.shape) for k, v in model.state_dict().items()
        }
    return shapes


def load_checkpoint(
    model: GroupMixFormer,
    path: str | Path,
    *,
    reset_head: bool = False,
    trust_checkpoint: bool = False,
) -> KeyReport:
    """Load a released (or our) checkpoint file into ``model`` strictly.

    ``model.backbone_only``: ``norm4.*``/``head.*`` are allowed as unexpected and nothing else may
    be off. ``reset_head=True``: the checkpoint's head is skipped (use when ``num_classes`` differs;
    the model keeps its freshly initialised head). Anything else off raises
    ``CheckpointMismatchError`` with a one-line summary naming the variant the file looks like.
    """
    state = read_state_dict(path, trust_checkpoint=trust_checkpoint)
    allow_unexpected: tuple[str, ...] = ()
    allow_missing: tuple[str, ...] = ()
    if model.backbone_only:
        allow_unexpected = CLASSIFIER_PREFIXES
    elif reset_head or model.num_classes == 0:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        allow_missing = ("head.",)
    checked = functools.partial(
        load_state_dict_checked,
        model,
        state,
        allow_missing=allow_missing,
        allow_unexpected=allow_unexpected,
        source=str(path),
        expected="a GroupMixFormer state dict",
    )
    try:
        report = checked()
    except CheckpointMismatchError:  # nothing was loaded: say which variant the file looks like
        report = checked(variants=variant_shapes())

    if not report.ok:
        logger.info("loaded %s with expected differences: %s", path, report.describe())
    return report


def save_checkpoint(model: GroupMixFormer, path: str | Path) -> Path:
    """Save in the released format, ``{'model': state_dict}`` (fp32 tensors)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)
    return path
