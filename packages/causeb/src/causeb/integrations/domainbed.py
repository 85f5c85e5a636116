"""Use CausEB inside a DomainBed checkout (facebookresearch/DomainBed).

::

    from domainbed import algorithms, hparams_registry
    from causeb.integrations.domainbed import register

    register(algorithms, hparams_registry)   # then: python -m domainbed.scripts.train --algorithm CausEB

Adds the class under both of its upstream spellings (``CauseEB``, ``CausEB``) and CausEB's own
hyper-parameters (``alpha``, ``beta``, ``mlp_*``, ``split_after``, ...) for those names, drawn as
DomainBed draws its own. Names DomainBed defines for every algorithm (``resnet18``, ``lr``, ...)
keep DomainBed's definitions: pass ``--hparams '{"resnet18": true}'`` for the paper's ResNet-18.
"""

from __future__ import annotations

from types import ModuleType

from causeb.algorithm import CausEB, CauseEB
from causeb.config import causeb_hparams
from papers_shared.dg.domainbed import register_with_domainbed

__all__ = ["register"]


def register(algorithms: ModuleType, hparams_registry: ModuleType) -> None:
    """Add ``CauseEB`` / ``CausEB`` and their hyper-parameters to DomainBed's modules."""
    register_with_domainbed(
        algorithms, hparams_registry, {"CauseEB": CauseEB, "CausEB": CausEB}, causeb_hparams
    )
