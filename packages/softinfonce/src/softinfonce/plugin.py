"""The ``papers.methods`` entry point."""

from __future__ import annotations

from pathlib import Path

from papers_shared.methods import DemoResult, Method, Table

__all__ = ["METHOD", "info", "demo"]


def info() -> list[Table]:
    from softinfonce.info import info_tables

    return info_tables()


def demo(
    *,
    full: bool = False,
    output_root: Path = Path("runs"),
    progress: bool | None = None,
    seed: int = 0,
) -> DemoResult:
    from softinfonce.demo import run_demo

    return run_demo(full=full, output_root=output_root, progress=progress, seed=seed)


METHOD = Method(
    name="softinfonce",
    title="Speed Co-Augmentation for Unsupervised Audio-Visual Pre-training (SoftInfoNCE)",
    info=info,
    demo=demo,
)
