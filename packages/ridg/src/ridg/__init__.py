"""RIDG: domain generalization via rationale invariance (Chen et al., ICCV 2023).

Names load on first use; ``from ridg import RIDG`` (or importing ``ridg.algorithm``) registers
the ``RIDG`` algorithm with the DomainBed-style harness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from papers_shared.lazy import lazy_exports
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


__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"ridg.{module}" for name, module in _WHERE.items()}
)
