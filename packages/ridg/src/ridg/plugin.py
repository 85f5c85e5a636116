"""The ``papers`` plugin entry point of ``ridg`` (the heavy modules load when a verb runs)."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "ridg",
    "Domain Generalization via Rationale Invariance (ICCV 2023)",
    info="ridg.info:info",
    demo="ridg.demo:demo",
)
