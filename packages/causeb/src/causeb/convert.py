"""Loading official CausEB / DomainBed checkpoints (no trained ones were released upstream).

A DomainBed checkpoint is a ``torch.save`` dict with ``args``, ``model_input_shape``,
``model_num_classes``, ``model_num_domains``, ``model_hparams`` and ``model_dict``; the official
``model_dict`` keys equal ours, so it loads strictly. Hyper-parameters the official registry lacks
(``mlp_*``) take our defaults.
"""

from __future__ import annotations

from pathlib import Path

import torch

from causeb.algorithm import CauseEB
from papers_shared.checkpoint import CheckpointError, load_state_dict_checked

__all__ = ["OFFICIAL_CLASS_NAMES", "load_domainbed_checkpoint"]

OFFICIAL_CLASS_NAMES = ("CauseEB", "CausEB")
CHECKPOINT_KEYS = ("model_input_shape", "model_num_classes", "model_num_domains", "model_dict")


def load_domainbed_checkpoint(path: str | Path) -> CauseEB:
    """Rebuild a :class:`CauseEB` from a DomainBed ``model.pkl`` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for non-checkpoints
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {err}") from err
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in CHECKPOINT_KEYS):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is not a DomainBed checkpoint: expected keys {CHECKPOINT_KEYS}, found {found}"
        )
    algorithm_name = (checkpoint.get("args") or {}).get("algorithm", "CauseEB")
    if algorithm_name not in OFFICIAL_CLASS_NAMES:
        raise CheckpointError(
            f"{path} holds a {algorithm_name!r} model, expected one of {OFFICIAL_CLASS_NAMES}"
        )
    hparams = dict(checkpoint.get("model_hparams") or {})
    hparams["resnet_pretrained"] = False  # the checkpoint brings every weight: no download
    algorithm = CauseEB(
        tuple(checkpoint["model_input_shape"]),
        int(checkpoint["model_num_classes"]),
        int(checkpoint["model_num_domains"]),
        hparams,
    )
    load_state_dict_checked(algorithm, checkpoint["model_dict"], source=str(path))
    return algorithm
