"""CausEB's hyper-parameters as a typed config, and their DomainBed registry entries.

``CausEBConfig`` holds the defaults (the official registry's at ``hparams_seed 0``, plus the
values it lacks) with per-field documentation and validation; :func:`causeb_hparams` turns it
into DomainBed registry entries. The random-search ranges live in :func:`causeb_search_space`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from causeb.augment import NUM_DRAWS
from causeb.losses import PROJECTOR_PASSES
from papers_shared.dg.hparams import HParam

__all__ = ["CausEBConfig", "causeb_hparams", "causeb_search_space"]


@dataclass
class CausEBConfig:
    """CausEB's own hyper-parameters.

    Attributes:
        alpha: weight of the HSIC independence loss (official default 1).
        beta: weight of the consistency loss (official default 0.3).
        resnet18: ResNet-18 backbone (official default); False gives ResNet-50.
        mlp_width, mlp_depth, mlp_dropout: the domain head's MLP. The official registry lacks
            them (its code raises KeyError); defaults are DomainBed's DANN ones.
        split_after: the backbone stage after which the two branches split (``layer1`` in the
            paper; ``layer4`` is the late-branching ablation).
        train_projector: optimise the consistency projector (the official code never passes it
            to the optimizer, so it stays at its initialisation).
        projector_passes: projector calls per step: 6 as the official step (its BatchNorm
            statistics are updated six times), or 4 (each view projected once).
        use_abs_sigma: use |sigma'| in RDS (official: no clamp, sigma' may be negative).
        dissimilarity_margin: 0: the official max-minus-mean G; > 0: hinge relu(margin - MSE).
        rds_draws: candidate draws per RDS call (official 10,000).
    """

    alpha: float = 1.0
    beta: float = 0.3
    resnet18: bool = True
    mlp_width: int = 256
    mlp_depth: int = 3
    mlp_dropout: float = 0.0
    split_after: str = "layer1"
    train_projector: bool = False
    projector_passes: int = 6
    use_abs_sigma: bool = False
    dissimilarity_margin: float = 0.0
    rds_draws: int = NUM_DRAWS

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {self.alpha} and {self.beta}")
        if self.mlp_width < 1:
            raise ValueError(f"mlp_width must be >= 1, got {self.mlp_width}")
        if self.mlp_depth < 2:
            raise ValueError(
                f"mlp_depth must be >= 2 (input and output layers), got {self.mlp_depth}"
            )
        if not 0.0 <= self.mlp_dropout < 1.0:
            raise ValueError(f"mlp_dropout must be in [0, 1), got {self.mlp_dropout}")
        if self.projector_passes not in PROJECTOR_PASSES:
            raise ValueError(
                f"projector_passes must be one of {PROJECTOR_PASSES}, got {self.projector_passes}"
            )
        if self.dissimilarity_margin < 0:
            raise ValueError(f"dissimilarity_margin must be >= 0, got {self.dissimilarity_margin}")
        if self.rds_draws < 2:
            raise ValueError(f"rds_draws must be >= 2, got {self.rds_draws}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CausEBConfig:
        """Build from a dict holding exactly this config's names (unknown keys are refused)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown CausEB config key(s) {unknown}; valid: {sorted(names)}")
        return cls(**dict(values))

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> CausEBConfig:
        """Pick this config's names out of a full DomainBed hyper-parameter dict."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in hparams.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def causeb_search_space() -> dict[str, Callable[[np.random.RandomState], Any]]:
    """Random-search distributions: alpha, beta from the official registry; the domain MLP's
    from DomainBed's DANN entries. Names not listed stay fixed at their default."""
    return {
        "alpha": lambda r: 10 ** r.uniform(-1, 0),
        "beta": lambda r: 0.3 * 10 ** r.uniform(-1, 0),
        "mlp_width": lambda r: int(2 ** r.uniform(6, 10)),
        "mlp_depth": lambda r: int(r.choice([3, 4, 5])),
        "mlp_dropout": lambda r: float(r.choice([0.0, 0.1, 0.5])),
    }


_DOCS = {
    "alpha": "weight of the HSIC independence loss",
    "beta": "weight of the consistency loss",
    "resnet18": "ResNet-18 (False: ResNet-50)",
    "mlp_width": "domain-head MLP width",
    "mlp_depth": "domain-head MLP depth",
    "mlp_dropout": "domain-head dropout",
    "split_after": "stage after which the branches split",
    "train_projector": "optimise the projector (official code: it stays at init)",
    "projector_passes": "projector calls per step (official: 6)",
    "use_abs_sigma": "use |sigma'| in RDS (official: no clamp)",
    "dissimilarity_margin": "0: official max-minus-mean G; > 0: hinge relu(margin - MSE)",
    "rds_draws": "candidate draws per RDS call",
}


def causeb_hparams(dataset: str) -> dict[str, HParam]:
    """CausEB's registry entries: :class:`CausEBConfig` defaults, :func:`causeb_search_space`
    draws (DomainBed style: each name seeded by its own hash)."""
    search = causeb_search_space()
    return {
        name: HParam(default, search.get(name, _fixed(default)), _DOCS[name])
        for name, default in CausEBConfig().to_dict().items()
    }


def _fixed(value: Any) -> Callable[[Any], Any]:
    return lambda r: value
