"""The ``papers`` plugin entry point of ``instructdet`` (heavy modules load when a verb runs)."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "instructdet",
    "InstructDET: Diversifying Referring Object Detection with Generalized Instructions (ICLR 2024)",
    info="instructdet.info:info",
    demo="instructdet.demo:demo",
)
