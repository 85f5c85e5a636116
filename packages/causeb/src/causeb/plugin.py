"""The ``papers.methods`` entry point of causeb."""

from __future__ import annotations

from causeb.demo import demo
from causeb.info import info
from papers_shared.methods import Method

__all__ = ["METHOD"]

METHOD = Method(
    name="causeb",
    title="A Causal Inspired Early-Branching Structure for Domain Generalization (IJCV 2024)",
    info=info,
    demo=demo,
)
