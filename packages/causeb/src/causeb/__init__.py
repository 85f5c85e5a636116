"""CausEB: a causal-inspired early-branching network for domain generalization (IJCV 2024).

Names load on first use; ``from causeb import CauseEB`` (or importing ``causeb.algorithm``)
registers the ``CauseEB`` / ``CausEB`` algorithms with the DomainBed-style harness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from causeb._version import __version__
from papers_shared.lazy import lazy_exports

if TYPE_CHECKING:
    from causeb.algorithm import CausEB, CauseEB, hsic_of_features
    from causeb.augment import random_domain_sampling, sample_least_likely
    from causeb.config import CausEBConfig, causeb_hparams
    from causeb.convert import load_domainbed_checkpoint
    from causeb.losses import (
        consistency_loss,
        dissimilarity,
        hsic,
        hsic_closed_form,
        independence_loss,
    )
    from causeb.models import (
        DomainMLP,
        build_branches,
        build_projector,
        split_digits_cnn,
        split_resnet,
    )

_WHERE = {
    "CauseEB": "algorithm",
    "CausEB": "algorithm",
    "hsic_of_features": "algorithm",
    "CausEBConfig": "config",
    "causeb_hparams": "config",
    "load_domainbed_checkpoint": "convert",
    "hsic": "losses",
    "hsic_closed_form": "losses",
    "dissimilarity": "losses",
    "consistency_loss": "losses",
    "independence_loss": "losses",
    "DomainMLP": "models",
    "build_branches": "models",
    "build_projector": "models",
    "split_resnet": "models",
    "split_digits_cnn": "models",
    "random_domain_sampling": "augment",
    "sample_least_likely": "augment",
}

__all__ = [
    "__version__",
    "CauseEB",
    "CausEB",
    "CausEBConfig",
    "causeb_hparams",
    "hsic_of_features",
    "load_domainbed_checkpoint",
    "hsic",
    "hsic_closed_form",
    "dissimilarity",
    "consistency_loss",
    "independence_loss",
    "DomainMLP",
    "build_branches",
    "build_projector",
    "split_resnet",
    "split_digits_cnn",
    "random_domain_sampling",
    "sample_least_likely",
]


__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"causeb.{module}" for name, module in _WHERE.items()}
)
