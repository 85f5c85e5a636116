"""The ``papers`` plugin entry point of ``etris`` (the heavy modules load when a verb runs)."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "etris",
    "Bridging Vision and Language Encoders: Parameter-Efficient Tuning for Referring "
    "Image Segmentation (ICCV 2023)",
    info="etris.info:info",
    demo="etris.demo:demo",
)
