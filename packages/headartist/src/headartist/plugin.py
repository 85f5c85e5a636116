"""The ``papers`` plugin entry point of ``headartist`` (the heavy modules load when a verb runs)."""

from __future__ import annotations

from pathlib import Path

from papers_shared.methods import DemoResult, Method, Table

__all__ = ["METHOD"]


def _info() -> list[Table]:
    from headartist.info import info

    return info()


def _demo(
    *,
    full: bool = False,
    output_root: Path = Path("runs"),
    progress: bool | None = None,
    seed: int = 0,
) -> DemoResult:
    from headartist.demo import demo

    return demo(full=full, output_root=output_root, progress=progress, seed=seed)


METHOD = Method(
    name="headartist",
    title="HeadArtist: Text-conditioned 3D Head Generation with Self Score Distillation (SIGGRAPH 2024)",
    info=_info,
    demo=_demo,
)
