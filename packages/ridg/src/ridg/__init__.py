"""RIDG: domain generalization via rationale invariance (Chen et al., ICCV 2023)."""

from ridg._version import __version__
from ridg.algorithm import RIDG, ridg_hparams
from ridg.losses import (
    BANK_DTYPES,
    REDUCTIONS,
    VARIANTS,
    RationaleInvarianceLoss,
    closed_form_rationale_loss,
    naive_rationale_loss,
    rationale,
)

__all__ = [
    "__version__",
    "RIDG",
    "ridg_hparams",
    "RationaleInvarianceLoss",
    "rationale",
    "naive_rationale_loss",
    "closed_form_rationale_loss",
    "REDUCTIONS",
    "VARIANTS",
    "BANK_DTYPES",
]
