"""CausEB: a causal-inspired early-branching network for domain generalization (IJCV 2024).

Importing registers the ``CauseEB`` / ``CausEB`` algorithms with the DomainBed-style harness.
"""

from causeb._version import __version__
from causeb.algorithm import CausEB, CauseEB, causeb_hparams, hsic_of_features
from causeb.convert import load_domainbed_checkpoint
from causeb.hsic import hsic, hsic_closed_form
from causeb.losses import consistency_loss, dissimilarity, independence_loss
from causeb.models import (
    DomainMLP,
    build_branches,
    build_projector,
    split_digits_cnn,
    split_resnet,
)
from causeb.rds import random_domain_sampling, sample_least_likely

__all__ = [
    "__version__",
    "CauseEB",
    "CausEB",
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
