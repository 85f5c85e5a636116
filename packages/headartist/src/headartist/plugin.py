"""The ``papers`` plugin entry point of ``headartist`` (the heavy modules load when a verb runs)."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "headartist",
    "HeadArtist: Text-conditioned 3D Head Generation with Self Score Distillation (SIGGRAPH 2024)",
    info="headartist.info:info",
    demo="headartist.demo:demo",
)
