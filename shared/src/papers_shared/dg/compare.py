"""Same-budget comparisons of algorithms for the DG packages' demos (no files written)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from papers_shared.dg.algorithms import Algorithm
from papers_shared.dg.datasets import get_dataset_class
from papers_shared.dg.selection import select_run
from papers_shared.dg.trainer import TrainConfig, train_algorithm
from papers_shared.methods import Table

__all__ = [
    "RunResult",
    "compare_algorithms",
    "comparison_table",
    "mean_accuracy",
    "per_seed_accuracy",
    "arm_table",
]


@dataclass
class RunResult:
    label: str
    test_env: int
    seed: int
    test_acc: float
    val_acc: float
    records: list[dict[str, Any]] = field(repr=False)
    algorithm: Algorithm | None = field(default=None, repr=False)
    dataset: str = ""


def compare_algorithms(
    dataset: str,
    variants: Mapping[str, tuple[str, Mapping[str, Any]]],
    test_envs: Sequence[int],
    seeds: Sequence[int],
    steps: int,
    checkpoint_freq: int,
    progress: bool | None = None,
    keep_models: bool = False,
) -> list[RunResult]:
    """Train every ``label -> (algorithm name, hparam overrides)`` on each held-out domain and seed.

    Each run uses ``trial_seed = seed = s`` so all variants see the same splits and batches order
    seed; the checkpoint is chosen by training-domain validation. ``keep_models`` keeps each
    trained algorithm (its final state) on the result, for measurements after training.
    """
    results = []
    for seed in seeds:
        for test_env in test_envs:
            for label, (algorithm, overrides) in variants.items():
                cfg = TrainConfig(
                    dataset=dataset,
                    algorithm=algorithm,
                    test_envs=[test_env],
                    hparams=dict(overrides),
                    trial_seed=seed,
                    seed=seed,
                    steps=steps,
                    checkpoint_freq=checkpoint_freq,
                    output_dir=None,
                    progress=progress,
                )
                records, algorithm = train_algorithm(cfg)
                chosen = select_run(records, "training_domain")
                if chosen is None:  # cannot happen: every run here has one test domain
                    raise RuntimeError(f"no checkpoint selected for {label} on {dataset}")
                results.append(
                    RunResult(
                        label,
                        test_env,
                        seed,
                        chosen["test_acc"],
                        chosen["val_acc"],
                        records,
                        algorithm if keep_models else None,
                        dataset,
                    )
                )
    return results


def mean_accuracy(results: Sequence[RunResult], label: str) -> float:
    """Mean held-out accuracy of one variant over every test domain and seed."""
    values = [r.test_acc for r in results if r.label == label]
    if not values:
        raise ValueError(f"no results for {label!r}")
    return float(np.mean(values))


def comparison_table(results: Sequence[RunResult], dataset: str, title: str = "") -> Table:
    """Held-out-domain accuracy (%) per variant and test domain, mean +- s.e. over seeds, and the average."""
    envs = get_dataset_class(dataset).ENVIRONMENTS
    test_envs = sorted({r.test_env for r in results})
    rows = []
    for label in dict.fromkeys(r.label for r in results):
        cells = []
        for env in test_envs:
            accs = 100 * np.array(
                [r.test_acc for r in results if r.label == label and r.test_env == env]
            )
            se = accs.std() / np.sqrt(len(accs)) if len(accs) > 1 else 0.0
            cells.append(f"{accs.mean():.1f} ± {se:.1f}")
        rows.append([label, *cells, f"{100 * mean_accuracy(results, label):.1f}"])
    return Table(
        ["method", *[f"test={envs[e]}" for e in test_envs], "avg"], rows, title=title or dataset
    )


def per_seed_accuracy(results: Sequence[RunResult], label: str) -> list[float]:
    """Held-out accuracy (%) of one variant per seed (ascending seeds), each the mean over
    every (dataset, held-out domain) run of that seed: the paired values a verdict compares."""
    seeds = sorted({r.seed for r in results if r.label == label})
    if not seeds:
        raise ValueError(f"no results for {label!r}")
    return [
        100 * float(np.mean([r.test_acc for r in results if r.label == label and r.seed == s]))
        for s in seeds
    ]


def arm_table(results: Sequence[RunResult], title: str = "", notes: Sequence[str] = ()) -> Table:
    """Held-out accuracy (%) per variant: each (dataset, held-out domain) and the per-seed mean,
    as mean +- std over seeds (sample std, ddof=1)."""
    cells = sorted({(r.dataset, r.test_env) for r in results})
    headers = ["method"]
    for dataset, env in cells:
        envs = get_dataset_class(dataset).ENVIRONMENTS if dataset else []
        name = envs[env] if dataset else str(env)
        headers.append(f"{dataset} test={name}" if dataset else f"test={name}")
    headers.append("mean over domains")
    rows = []
    for label in dict.fromkeys(r.label for r in results):
        row: list[Any] = [label]
        for dataset, env in cells:
            accs = [
                100 * r.test_acc
                for r in results
                if r.label == label and r.dataset == dataset and r.test_env == env
            ]
            row.append(_mean_std(accs))
        row.append(_mean_std(per_seed_accuracy(results, label)))
        rows.append(row)
    return Table(headers, rows, title=title, notes=list(notes))


def _mean_std(values: Sequence[float]) -> str:
    std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return f"{np.mean(values):.1f} ± {std:.1f}" if len(values) > 1 else f"{values[0]:.1f}"
