"""Loading official CausEB / DomainBed checkpoints (no trained ones were released upstream).

A DomainBed checkpoint is a ``torch.save`` dict with ``args``, ``model_input_shape``,
``model_num_classes``, ``model_num_domains``, ``model_hparams`` and ``model_dict``; the official
``model_dict`` keys equal ours, so it loads strictly. Hyper-parameters the official registry lacks
(``mlp_*``) take our defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from causeb.algorithm import CauseEB
from papers_shared.checkpoint import CheckpointError
from papers_shared.dg.trainer import algorithm_from_checkpoint, read_domainbed_checkpoint

__all__ = ["OFFICIAL_CLASS_NAMES", "load_domainbed_checkpoint"]

OFFICIAL_CLASS_NAMES = ("CauseEB", "CausEB")


def load_domainbed_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> CauseEB:
    """Rebuild a :class:`CauseEB` from a DomainBed ``model.pkl`` or the run folder holding it
    (``weights_only=True`` unless ``trust_checkpoint``)."""
    try:
        checkpoint = read_domainbed_checkpoint(path, trust_checkpoint)
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    algorithm_name = (checkpoint.get("args") or {}).get("algorithm", "CauseEB")
    if algorithm_name not in OFFICIAL_CLASS_NAMES:
        raise CheckpointError(
            f"{path} holds a {algorithm_name!r} model, expected one of {OFFICIAL_CLASS_NAMES}"
        )
    return cast(CauseEB, algorithm_from_checkpoint(checkpoint, CauseEB, str(path)))
