"""The ``papers`` plugin entry point of ``instructdet``."""

from __future__ import annotations

from pathlib import Path

from papers_shared.methods import DemoResult, Method, Table


def _info() -> list[Table]:
    from instructdet.info import info

    return info()


def _demo(
    *,
    full: bool = False,
    output_root: Path = Path("runs"),
    progress: bool | None = None,
    seed: int = 0,
) -> DemoResult:
    from instructdet.demo import demo

    return demo(full=full, output_root=output_root, progress=progress, seed=seed)


METHOD = Method(
    name="instructdet",
    title="InstructDET: Diversifying Referring Object Detection with Generalized Instructions (ICLR 2024)",
    info=_info,
    demo=_demo,
)
