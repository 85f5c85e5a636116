"""Run outputs: ``runs/<package>/<timestamp>/metrics.json`` and training-curve plots."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

__all__ = ["make_run_dir", "write_metrics", "plot_curves"]


def make_run_dir(package: str, root: str | Path = "runs", name: str | None = None) -> Path:
    """Create and return ``<root>/<package>/<name or UTC timestamp>/`` (made unique if taken)."""
    stamp = name or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / package / stamp
    path, n = base, 1
    while path.exists():
        path = base.with_name(f"{stamp}-{n}")
        n += 1
    path.mkdir(parents=True)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_metrics(
    run_dir: str | Path, metrics: Mapping[str, Any], filename: str = "metrics.json"
) -> Path:
    """Write ``metrics`` as indented JSON (numpy/torch scalars converted) and return the path."""
    path = Path(run_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(metrics), indent=2, sort_keys=True) + "\n")
    return path


def plot_curves(
    curves: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "step",
    ylabel: str = "",
) -> Path:
    """Plot named curves to a PNG (headless). A curve is ``ys`` or ``(xs, ys)``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("plot_curves needs at least one curve")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, curve in curves.items():
        xs: Sequence[float] | range
        if (
            isinstance(curve, tuple)
            and len(curve) == 2
            and all(isinstance(part, Sequence) for part in curve)
        ):
            xs, ys = cast(tuple[Sequence[float], Sequence[float]], curve)
        else:
            ys = cast(Sequence[float], curve)
            xs = range(len(ys))
        ax.plot(list(xs), list(ys), label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
