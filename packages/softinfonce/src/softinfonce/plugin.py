"""The ``papers.methods`` entry point."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "softinfonce",
    "Speed Co-Augmentation for Unsupervised Audio-Visual Pre-training (SoftInfoNCE)",
    info="softinfonce.info:info_tables",
    demo="softinfonce.demo:run_demo",
)
