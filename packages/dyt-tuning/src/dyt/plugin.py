"""The ``papers.methods`` entry point of dyt-tuning; ``info`` and ``demo`` load on first call."""

from __future__ import annotations

from pathlib import Path

from papers_shared.methods import DemoResult, Method, Table

__all__ = ["METHOD"]


def _info() -> list[Table]:
    from dyt.info import info

    return info()


def _demo(
    *,
    full: bool = False,
    output_root: Path = Path("runs"),
    progress: bool | None = None,
    seed: int = 0,
) -> DemoResult:
    from dyt.demo import demo

    return demo(full=full, output_root=output_root, progress=progress, seed=seed)


METHOD = Method(
    name="dyt-tuning",
    title="DyT: Dynamic Tuning for parameter- and inference-efficient ViT adaptation (NeurIPS 2024)",
    info=_info,
    demo=_demo,
)
