"""The ``papers.methods`` entry point of dyt-tuning; ``info`` and ``demo`` load on first call."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "dyt-tuning",
    "DyT: Dynamic Tuning for parameter- and inference-efficient ViT adaptation (NeurIPS 2024)",
    info="dyt.info:info",
    demo="dyt.demo:demo",
)
