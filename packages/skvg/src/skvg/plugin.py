"""The ``papers`` plugin entry point of ``skvg``."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "skvg",
    "Advancing Visual Grounding with Scene Knowledge: Benchmark and Method (CVPR 2023)",
    info="skvg.info:info",
    demo="skvg.demo:demo",
)
