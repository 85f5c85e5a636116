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

__all__ = ["RunResult", "compare_algorithms", "comparison_table", "mean_accuracy"]


@dataclass
class RunResult:
    label: str
    test_env: int
    seed: int
    test_acc: float
    val_acc: float
    records: list[dict[str, Any]] = field(repr=False)
    algorithm: Algorithm | None = field(default=None, repr=False)


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
                assert chosen is not None  # single-test-env runs always have a selection
                results.append(
                    RunResult(
                        label,
                        test_env,
                        seed,
                        chosen["test_acc"],
                        chosen["val_acc"],
                        records,
                        algorithm if keep_models else None,
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
