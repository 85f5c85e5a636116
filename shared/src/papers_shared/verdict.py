"""Whether a demo showed its paper's claim: paired per-seed differences against a margin.

Every demo states its margin before it runs and calls :func:`judge_claim` with one number per
seed for the method and for the baseline, measured on the same seeds::

    v = judge_claim(method=[71.2, 70.4, 72.0], baseline=[66.0, 67.1, 65.9], margin=2.0,
                    method_name="CausEB", baseline_name="ERM", metric="held-out acc (%)")
    v.verdict  # "held" | "not shown" | "reversed"

Rule: with d_i = method_i - baseline_i (sign flipped when lower is better), n seeds,
mean(d) and se(d) = std(d, ddof=1) / sqrt(n),

* ``held`` iff n >= 3, mean(d) > margin and mean(d) > 2 se(d);
* ``reversed`` iff n >= 3, mean(d) < -margin and -mean(d) > 2 se(d);
* ``not shown`` otherwise (always with fewer than 3 seeds; the line says why).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MIN_SEEDS", "ArmStats", "ClaimVerdict", "judge_claim"]

MIN_SEEDS = 3
VERDICTS = ("held", "not shown", "reversed")


def _std(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass(frozen=True)
class ArmStats:
    """One arm of a comparison: its per-seed values, their mean and sample std (ddof=1)."""

    name: str
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else float("nan")

    @property
    def std(self) -> float:
        return _std(self.values)

    def summary(self, precision: int = 4) -> str:
        """``"name 71.2 +- 0.8 (n=3)"``."""
        return f"{self.name} {self.mean:.{precision}g} +- {self.std:.2g} (n={len(self.values)})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values), "mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class ClaimVerdict:
    """The verdict on one claim, with everything needed to print or check it."""

    verdict: str
    """"held", "not shown" or "reversed"."""
    method: ArmStats
    baseline: ArmStats
    metric: str
    margin: float
    higher_is_better: bool
    mean_diff: float
    """Mean paired difference, oriented so that positive favours the method."""
    se_diff: float
    """Standard error of the mean difference (std with ddof=1 over sqrt(n)); nan below 2 seeds."""
    reason: str
    """Why the verdict is what it is, in a few words."""
    quick: bool = False
    """The demo ran in quick mode (fewer seeds)."""
    notes: tuple[str, ...] = field(default=())

    @property
    def n(self) -> int:
        return len(self.method.values)

    @property
    def held(self) -> bool:
        return self.verdict == "held"

    def line(self) -> str:
        """One sentence: both arms as mean +- std, the difference, the margin and the verdict."""
        better = "higher" if self.higher_is_better else "lower"
        verdict = self.verdict
        if self.quick and verdict == "not shown" and self.n < MIN_SEEDS:
            verdict = f"not shown (quick: {self.n} seed{'s' if self.n != 1 else ''})"
        se = "n/a" if math.isnan(self.se_diff) else f"{self.se_diff:.2g}"
        return (
            f"{self.metric} ({better} is better): {self.method.summary()} vs "
            f"{self.baseline.summary()}; paired difference {self.mean_diff:+.3g} (se {se}), "
            f"margin {self.margin:g} -> {verdict}: {self.reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "metric": self.metric,
            "margin": self.margin,
            "higher_is_better": self.higher_is_better,
            "n": self.n,
            "mean_diff": self.mean_diff,
            "se_diff": None if math.isnan(self.se_diff) else self.se_diff,
            "reason": self.reason,
            "quick": self.quick,
            "method": self.method.to_dict(),
            "baseline": self.baseline.to_dict(),
            "line": self.line(),
        }


def _as_floats(name: str, values: Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers (one per seed), got {values!r}")
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} holds a non-finite value: {list(out)}")
    return out


def judge_claim(
    method: Sequence[float],
    baseline: Sequence[float],
    margin: float,
    *,
    higher_is_better: bool = True,
    method_name: str = "method",
    baseline_name: str = "baseline",
    metric: str = "metric",
    quick: bool = False,
) -> ClaimVerdict:
    """Judge "method beats baseline by more than ``margin``" from paired per-seed results.

    ``method[i]`` and ``baseline[i]`` must come from the same seed ``i``. ``quick`` only changes
    the printed wording when there are too few seeds ("not shown (quick: N seeds)").
    """
    method_values = _as_floats("method", method)
    baseline_values = _as_floats("baseline", baseline)
    if len(method_values) != len(baseline_values):
        raise ValueError(
            f"method and baseline need one value per seed each, got {len(method_values)} and "
            f"{len(baseline_values)}"
        )
    if not method_values:
        raise ValueError("judge_claim needs at least one seed")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    sign = 1.0 if higher_is_better else -1.0
    diffs = [sign * (m - b) for m, b in zip(method_values, baseline_values)]
    n = len(diffs)
    mean_diff = sum(diffs) / n
    se = _std(diffs) / math.sqrt(n) if n >= 2 else float("nan")
    if n < MIN_SEEDS:
        verdict = "not shown"
        reason = f"{n} seed{'s' if n != 1 else ''}, at least {MIN_SEEDS} are needed"
    elif mean_diff > margin and mean_diff > 2 * se:
        verdict, reason = "held", "the difference exceeds the margin and twice its standard error"
    elif mean_diff < -margin and -mean_diff > 2 * se:
        verdict = "reversed"
        reason = "the baseline wins by more than the margin and twice the standard error"
    elif abs(mean_diff) <= margin:
        verdict, reason = "not shown", "the difference is within the margin"
    else:
        verdict, reason = "not shown", "the difference is within twice its standard error"
    return ClaimVerdict(
        verdict=verdict,
        method=ArmStats(method_name, method_values),
        baseline=ArmStats(baseline_name, baseline_values),
        metric=metric,
        margin=float(margin),
        higher_is_better=higher_is_better,
        mean_diff=mean_diff,
        se_diff=se,
        reason=reason,
        quick=quick,
    )
