"""The ``papers`` plugin entry point of ``skvg``."""

from __future__ import annotations

from pathlib import Path

from papers_shared.methods import DemoResult, Method, Table


def _info() -> list[Table]:
    from skvg.info import info

    return info()


def _demo(
    *,
    full: bool = False,
    output_root: Path = Path("runs"),
    progress: bool | None = None,
    seed: int = 0,
) -> DemoResult:
    from skvg.demo import demo

    return demo(full=full, output_root=output_root, progress=progress, seed=seed)


METHOD = Method(
    name="skvg",
    title="Advancing Visual Grounding with Scene Knowledge: Benchmark and Method (CVPR 2023)",
    info=_info,
    demo=_demo,
)
