"""RIDG: domain generalization via rationale invariance (Chen et al., ICCV 2023).

Names load on first use; ``from ridg import RIDG`` (or importing ``ridg.algorithm``) registers
the ``RIDG`` algorithm with the DomainBed-style harness.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ridg._version import __version__

if TYPE_CHECKING:
    from ridg.algorithm import RIDG
    from ridg.config import RIDGConfig, ridg_hparams
    from ridg.losses import (
        BANK_DTYPES,
        REDUCTIONS,
        VARIANTS,
        RationaleInvarianceLoss,
        closed_form_rationale_loss,
        naive_rationale_loss,
        rationale,
    )

_WHERE = {
    "RIDG": "algorithm",
    "RIDGConfig": "config",
    "ridg_hparams": "config",
    "RationaleInvarianceLoss": "losses",
    "rationale": "losses",
    "naive_rationale_loss": "losses",
    "closed_form_rationale_loss": "losses",
    "REDUCTIONS": "losses",
    "VARIANTS": "losses",
    "BANK_DTYPES": "losses",
}

__all__ = [
    "__version__",
    "RIDG",
    "RIDGConfig",
    "ridg_hparams",
    "RationaleInvarianceLoss",
    "rationale",
    "naive_rationale_loss",
    "closed_form_rationale_loss",
    "REDUCTIONS",
    "VARIANTS",
    "BANK_DTYPES",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ridg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ridg.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
