"""The plugin contract between method packages and the ``papers`` command.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."papers.methods"]
    ridg = "ridg.plugin:METHOD"

where ``METHOD`` is a :class:`Method`. ``info()`` returns the params/FLOPs tables and
``demo(full=..., output_root=..., progress=..., seed=...)`` runs the miniature of the paper's claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from papers_shared.verdict import ClaimVerdict

__all__ = [
    "ENTRY_POINT_GROUP",
    "Table",
    "DemoResult",
    "Method",
    "DemoFn",
    "discover_methods",
    "lazy_method",
]

ENTRY_POINT_GROUP = "papers.methods"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


@dataclass
class Table:
    """A small table that renders as Markdown (so README tables are the printed ones)."""

    headers: list[str]
    rows: list[list[Any]]
    title: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ValueError(f"row {row!r} has {len(row)} cells, expected {len(self.headers)}")

    def render(self) -> str:
        cells = [[_cell(c) for c in row] for row in self.rows]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(self.headers)]
        line = lambda items: "| " + " | ".join(s.ljust(w) for s, w in zip(items, widths)) + " |"  # noqa: E731
        out = [f"### {self.title}", ""] if self.title else []
        out.append(line(self.headers))
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out.extend(line(r) for r in cells)
        out.extend(["", *self.notes] if self.notes else [])
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DemoResult:
    """What a demo measured and whether the paper's claim held in miniature.

    ``verdicts`` (from :func:`papers_shared.verdict.judge_claim`, one per claim) decide ``held``:
    it is ``all(v.verdict == "held")``. ``ours`` / ``baseline`` default to the first verdict's arm
    means. A result without verdicts keeps the ``held`` it was given.
    """

    package: str
    claim: str
    metric: str
    ours: float = math.nan
    baseline: float = math.nan
    held: bool = False
    table: Table = field(default_factory=lambda: Table(["arm", "mean", "std"], []))
    run_dir: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)
    verdicts: list[ClaimVerdict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdicts:
            self.held = all(v.verdict == "held" for v in self.verdicts)
            first = self.verdicts[0]
            if math.isnan(self.ours):
                self.ours = first.method.mean
            if math.isnan(self.baseline):
                self.baseline = first.baseline.mean

    @property
    def verdict(self) -> str:
        """ "held" when every verdict held; else "reversed" if any is reversed; else "not shown".
        Without verdicts: "held" or "did not hold" from ``held``."""
        if not self.verdicts:
            return "held" if self.held else "did not hold"
        if self.held:
            return "held"
        if any(v.verdict == "reversed" for v in self.verdicts):
            return "reversed"
        return "not shown"

    def summary_lines(self) -> list[str]:
        """Per claim: mean +- std per arm, the margin and the verdict (one line each)."""
        if self.verdicts:
            return [v.line() for v in self.verdicts]
        return [
            f"{self.metric}: ours {self.ours:.4g} vs baseline {self.baseline:.4g} -> "
            f"{self.verdict} (one run, no margin)"
        ]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["run_dir"] = str(self.run_dir) if self.run_dir else None
        out["verdicts"] = [v.to_dict() for v in self.verdicts]
        out["verdict"] = self.verdict
        return out


class DemoFn(Protocol):
    def __call__(
        self,
        *,
        full: bool = False,
        output_root: Path = ...,
        progress: bool | None = None,
        seed: int = 0,
    ) -> DemoResult: ...


@dataclass(frozen=True)
class Method:
    """One installed paper implementation, as the ``papers`` command sees it."""

    name: str
    title: str
    info: Callable[[], Sequence[Table]]
    demo: DemoFn


def discover_methods() -> dict[str, Method | Exception]:
    """Installed methods by name; a plugin that fails to load maps to its exception."""
    found: dict[str, Method | Exception] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            method = ep.load()
            if not isinstance(method, Method):
                raise TypeError(
                    f"entry point {ep.value} is a {type(method).__name__}, not a papers_shared Method"
                )
            found[ep.name] = method
        except Exception as err:  # a broken plugin must not hide the others
            found[ep.name] = err
    return dict(sorted(found.items()))


def lazy_method(name: str, title: str, *, info: str, demo: str) -> Method:
    """A :class:`Method` whose ``info`` and ``demo`` are ``"module:function"`` references, imported
    only when called, so that a package's plugin and command line load no heavy module::

        METHOD = lazy_method("ridg", "Domain Generalization via Rationale Invariance (ICCV 2023)",
                             info="ridg.info:info", demo="ridg.demo:demo")
    """
    from papers_shared.lazy import import_ref

    def info_fn() -> Sequence[Table]:
        return import_ref(info)()

    def demo_fn(
        *,
        full: bool = False,
        output_root: Path = Path("runs"),
        progress: bool | None = None,
        seed: int = 0,
    ) -> DemoResult:
        return import_ref(demo)(full=full, output_root=output_root, progress=progress, seed=seed)

    return Method(name=name, title=title, info=info_fn, demo=demo_fn)
