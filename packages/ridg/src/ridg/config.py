"""RIDG's hyper-parameters as a typed config, and their DomainBed registry entries.

``RIDGConfig`` holds the defaults (those of the official registry at ``hparams_seed 0``) with
per-field documentation and validation; :func:`ridg_hparams` turns it into DomainBed registry
entries (default + random-search distribution). The random-search ranges live in
:func:`ridg_search_space`, apart from the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from papers_shared.dg.hparams import HParam
from ridg.losses import BANK_DTYPES, REDUCTIONS, VARIANTS

__all__ = ["RIDGConfig", "ridg_hparams", "ridg_search_space"]


@dataclass
class RIDGConfig:
    """RIDG's own hyper-parameters (names as in the official registry where it has them).

    Attributes:
        momentum: m, weight of the new batch mean in the class-mean bank (paper: m in
            [1e-4, 0.1]; official default 0.001).
        ridg_reg: alpha, weight of the invariance loss (official default 0.01; paper text:
            alpha in [1e-3, 0.1]).
        ridg_reduction: loss normalisation: ``official`` (code), ``paper`` (equation) or
            ``mse`` (pseudo-code).
        ridg_variant: what is made invariant: ``rationale`` (the method) or one of the paper's
            ablations (``feature``, ``logit``, ``fixed_target``, ``batch_target``,
            ``zero_target``).
        ridg_closed_form: memory-exact closed form of the loss (else the naive (K, N, D) form).
        ridg_double_forward: two featurizer passes per step, as the official code.
        ridg_min_class_count: classes with fewer samples in a batch are left out of the loss
            (1: keep all, as the official code).
        ridg_bank_dtype: bank storage: ``float32``, ``bfloat16`` (stochastic rounding) or
            ``float16``.
        resnet18: ResNet-18 backbone (the paper's main table); False gives ResNet-50.
    """

    momentum: float = 0.001
    ridg_reg: float = 0.01
    ridg_reduction: str = "official"
    ridg_variant: str = "rationale"
    ridg_closed_form: bool = True
    ridg_double_forward: bool = False
    ridg_min_class_count: int = 1
    ridg_bank_dtype: str = "float32"
    resnet18: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(
                f"momentum must be in [0, 1] (weight of the new mean), got {self.momentum}"
            )
        if self.ridg_reg < 0:
            raise ValueError(f"ridg_reg (alpha) must be >= 0, got {self.ridg_reg}")
        if self.ridg_reduction not in REDUCTIONS:
            raise ValueError(
                f"ridg_reduction must be one of {REDUCTIONS}, got {self.ridg_reduction!r}"
            )
        if self.ridg_variant not in VARIANTS:
            raise ValueError(f"ridg_variant must be one of {VARIANTS}, got {self.ridg_variant!r}")
        if self.ridg_bank_dtype not in BANK_DTYPES:
            raise ValueError(
                f"ridg_bank_dtype must be one of {sorted(BANK_DTYPES)}, got {self.ridg_bank_dtype!r}"
            )
        if self.ridg_min_class_count < 1:
            raise ValueError(f"ridg_min_class_count must be >= 1, got {self.ridg_min_class_count}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RIDGConfig:
        """Build from a dict holding exactly this config's names (unknown keys are refused)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown RIDG config key(s) {unknown}; valid: {sorted(names)}")
        return cls(**dict(values))

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> RIDGConfig:
        """Pick this config's names out of a full DomainBed hyper-parameter dict."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in hparams.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log_uniform(low: float, high: float, scale: float = 1.0) -> Callable[[Any], float]:
    return lambda r: scale * 10 ** r.uniform(low, high)


def ridg_search_space() -> dict[str, Callable[[np.random.RandomState], Any]]:
    """Random-search distributions of the official registry (names not listed stay fixed)."""
    return {
        "momentum": _log_uniform(-4, -1),
        "ridg_reg": _log_uniform(-2, -1),
    }


def ridg_hparams(dataset: str) -> dict[str, HParam]:
    """RIDG's registry entries: :class:`RIDGConfig` defaults, :func:`ridg_search_space` draws."""
    docs = {
        "momentum": "weight of the new batch mean in the class-mean bank (paper: m in [1e-4, 0.1])",
        "ridg_reg": "alpha, weight of the invariance loss (paper text: [1e-3, 0.1])",
        "ridg_reduction": f"loss normalisation, one of {REDUCTIONS}",
        "ridg_variant": f"what is made invariant / target, one of {VARIANTS}",
        "ridg_closed_form": "memory-exact closed form (else naive)",
        "ridg_double_forward": "two featurizer passes per step, as the official code",
        "ridg_min_class_count": "classes with fewer samples in a batch are left out of the loss",
        "ridg_bank_dtype": f"bank storage, one of {sorted(BANK_DTYPES)}",
        "resnet18": "ResNet-18 (the paper's main table)",
    }
    search = ridg_search_space()
    entries = {}
    for name, default in RIDGConfig().to_dict().items():
        sample = search.get(name, _fixed(default))
        entries[name] = HParam(default, sample, docs[name])
    return entries


def _fixed(value: Any) -> Callable[[Any], Any]:
    return lambda r: value
