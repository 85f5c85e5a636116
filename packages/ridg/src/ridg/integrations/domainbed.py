"""Use RIDG inside a DomainBed checkout (facebookresearch/DomainBed).

::

    from domainbed import algorithms, hparams_registry
    from ridg.integrations.domainbed import register

    register(algorithms, hparams_registry)   # then: python -m domainbed.scripts.train --algorithm RIDG

Adds the ``RIDG`` class to ``algorithms`` and RIDG's own hyper-parameters (``momentum``,
``ridg_reg``, ``ridg_*``) to the registry for that algorithm, drawn as DomainBed draws its own.
Names DomainBed defines for every algorithm (``resnet18``, ``lr``, ...) keep DomainBed's
definitions: pass ``--hparams '{"resnet18": true}'`` for the paper's ResNet-18.
"""

from __future__ import annotations

from types import ModuleType

from papers_shared.dg.domainbed import register_with_domainbed
from ridg.algorithm import RIDG
from ridg.config import ridg_hparams

__all__ = ["register"]


def register(algorithms: ModuleType, hparams_registry: ModuleType) -> None:
    """Add ``RIDG`` and its hyper-parameters to DomainBed's ``algorithms`` / ``hparams_registry``."""
    register_with_domainbed(algorithms, hparams_registry, {"RIDG": RIDG}, ridg_hparams)
