"""The ``papers.methods`` entry point of causeb (the heavy modules load when a verb runs)."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "causeb",
    "A Causal Inspired Early-Branching Structure for Domain Generalization (IJCV 2024)",
    info="causeb.info:info",
    demo="causeb.demo:demo",
)
