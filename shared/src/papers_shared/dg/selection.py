"""Model selection over DomainBed records (they only read records, never models).

- training-domain validation (DomainBed's default, ``IIDAccuracySelectionMethod``)
- test-domain validation (``oracle``: the final checkpoint, hparams by test-domain out-split)
- leave-one-domain-out validation (needs the sweep's runs with two test domains)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["SELECTION_METHODS", "select_run", "select_hparams", "group_records"]

Record = Mapping[str, Any]


def _num_envs(record: Record) -> int:
    n = 0
    while f"env{n}_out_acc" in record:
        n += 1
    return n


def _training_domain_validation(run: Sequence[Record]) -> dict[str, float] | None:
    runs = [r for r in run if len(r["args"]["test_envs"]) == 1]
    if not runs:
        return None
    test_env = runs[0]["args"]["test_envs"][0]

    def score(record: Record) -> float:
        envs = [i for i in range(_num_envs(record)) if i != test_env]
        return float(np.mean([record[f"env{i}_out_acc"] for i in envs]))

    best = max(runs, key=score)
    return {"val_acc": score(best), "test_acc": best[f"env{test_env}_in_acc"], "step": best["step"]}


def _oracle(run: Sequence[Record]) -> dict[str, float] | None:
    runs = [r for r in run if len(r["args"]["test_envs"]) == 1]
    if not runs:
        return None
    test_env = runs[0]["args"]["test_envs"][0]
    last = max(runs, key=lambda r: r["step"])
    return {
        "val_acc": last[f"env{test_env}_out_acc"],
        "test_acc": last[f"env{test_env}_in_acc"],
        "step": last["step"],
    }


def _leave_one_out(run: Sequence[Record]) -> dict[str, float] | None:
    by_step: dict[int, list[Record]] = defaultdict(list)
    for record in run:
        by_step[record["step"]].append(record)
    best: dict[str, float] | None = None
    for step, records in by_step.items():
        single = [r for r in records if len(r["args"]["test_envs"]) == 1]
        if len(single) != 1:
            continue
        test_env = single[0]["args"]["test_envs"][0]
        n_envs = _num_envs(single[0])
        val_accs = np.full(n_envs, -1.0)
        for record in records:
            if len(record["args"]["test_envs"]) == 2:
                val_env = (set(record["args"]["test_envs"]) - {test_env}).pop()
                val_accs[val_env] = record[f"env{val_env}_in_acc"]
        val_accs = np.delete(val_accs, test_env)
        if (val_accs < 0).any():
            continue
        candidate = {
            "val_acc": float(val_accs.mean()),
            "test_acc": single[0][f"env{test_env}_in_acc"],
            "step": step,
        }
        if best is None or candidate["val_acc"] > best["val_acc"]:
            best = candidate
    return best


SELECTION_METHODS = {
    "training_domain": _training_domain_validation,
    "oracle": _oracle,
    "leave_one_out": _leave_one_out,
}


def select_run(run: Sequence[Record], method: str = "training_domain") -> dict[str, float] | None:
    """Pick a checkpoint within one run (all records of one hparams draw for one test domain)."""
    if method not in SELECTION_METHODS:
        raise ValueError(
            f"unknown selection method {method!r}; choose from {sorted(SELECTION_METHODS)}"
        )
    return SELECTION_METHODS[method](run)


def group_records(records: Sequence[Record]) -> dict[tuple[Any, ...], dict[int, list[Record]]]:
    """``(dataset, algorithm, test_env, trial_seed) -> {hparams_seed: records}``.

    A run with two test domains joins the group of each of them (for leave-one-out selection).
    """
    groups: dict[tuple[Any, ...], dict[int, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        args = record["args"]
        for test_env in args["test_envs"]:
            key = (args["dataset"], args["algorithm"], test_env, args["trial_seed"])
            groups[key][args["hparams_seed"]].append(record)
    return groups


def select_hparams(
    runs: Mapping[int, Sequence[Record]], method: str = "training_domain"
) -> dict[str, float] | None:
    """Across hparams draws, the run whose selected checkpoint has the best validation accuracy."""
    chosen = [acc for acc in (select_run(run, method) for run in runs.values()) if acc is not None]
    return max(chosen, key=lambda a: a["val_acc"]) if chosen else None
