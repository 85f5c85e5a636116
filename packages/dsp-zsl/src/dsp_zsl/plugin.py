"""The ``papers`` plugin entry point of ``dsp-zsl`` (the heavy modules load when a verb runs)."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "dsp-zsl",
    "Evolving Semantic Prototype Improves Generative Zero-Shot Learning (ICML 2023)",
    info="dsp_zsl.info:info",
    demo="dsp_zsl.demo:demo",
)
