"""``papers`` plugin: ``info()`` (params/FLOPs per variant beside the paper) and ``demo()``.

Both are imported on first call, so that discovering the plugin stays cheap."""

from __future__ import annotations

from pathlib import Path

from papers_shared.methods import DemoResult, Method, Table

__all__ = ["METHOD"]


def _info() -> list[Table]:
    from groupmixformer.info import info

    return info()


def _demo(
    *,
    full: bool = False,
    output_root: Path = Path("runs"),
    progress: bool | None = None,
    seed: int = 0,
) -> DemoResult:
    from groupmixformer.demo import demo

    return demo(full=full, output_root=output_root, progress=progress, seed=seed)


METHOD = Method(
    name="groupmixformer",
    title="Advancing Vision Transformers with Group-Mix Attention (GroupMixFormer)",
    info=_info,
    demo=_demo,
)
