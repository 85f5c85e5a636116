"""Sweeps (random hparam search x trials x test domains) and result collection, DomainBed style.

Each job's output folder is the md5 of its arguments, so re-running a sweep skips finished jobs
(``done`` marker) and ``--shard i/n`` lets any scheduler fan the jobs out.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from papers_shared.dg.datasets import get_dataset_class
from papers_shared.dg.selection import group_records, select_hparams
from papers_shared.dg.trainer import TrainConfig, train
from papers_shared.methods import Table
from papers_shared.seeding import seed_hash
from papers_shared.sharding import take_shard

__all__ = ["Job", "make_jobs", "run_jobs", "delete_incomplete", "load_records", "results_table"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    args: dict[str, Any]
    output_dir: Path

    @property
    def is_done(self) -> bool:
        return (self.output_dir / "done").exists()


def _test_env_sets(n_envs: int, single_test_envs: bool) -> list[list[int]]:
    singles = [[i] for i in range(n_envs)]
    if single_test_envs:
        return singles
    return singles + [list(pair) for pair in itertools.combinations(range(n_envs), 2)]


def make_jobs(
    *,
    algorithms: Sequence[str],
    datasets: Sequence[str],
    data_dir: str | None,
    output_dir: str | Path,
    n_hparams_from: int = 0,
    n_hparams: int = 20,
    n_trials_from: int = 0,
    n_trials: int = 3,
    steps: int | None = None,
    hparams: str | None = None,
    holdout_fraction: float = 0.2,
    single_test_envs: bool = False,
    skip_model_save: bool = False,
) -> list[Job]:
    """DomainBed's ``make_args_list``: same arguments, seeds and md5-named output folders."""
    jobs = []
    for trial_seed in range(n_trials_from, n_trials):
        for dataset in datasets:
            n_envs = len(get_dataset_class(dataset).ENVIRONMENTS)
            for algorithm in algorithms:
                for test_envs in _test_env_sets(n_envs, single_test_envs):
                    for hparams_seed in range(n_hparams_from, n_hparams):
                        args: dict[str, Any] = {
                            "dataset": dataset,
                            "algorithm": algorithm,
                            "test_envs": test_envs,
                            "holdout_fraction": holdout_fraction,
                            "hparams_seed": hparams_seed,
                            "data_dir": data_dir,
                            "trial_seed": trial_seed,
                            "seed": seed_hash(
                                dataset, algorithm, test_envs, hparams_seed, trial_seed
                            ),
                        }
                        if steps is not None:
                            args["steps"] = steps
                        if hparams is not None:
                            args["hparams"] = hparams
                        name = hashlib.md5(
                            json.dumps(args, sort_keys=True).encode("utf-8")
                        ).hexdigest()
                        args["output_dir"] = str(Path(output_dir) / name)
                        args["skip_model_save"] = skip_model_save
                        jobs.append(Job(args=args, output_dir=Path(output_dir) / name))
    return jobs


def run_jobs(
    jobs: Sequence[Job],
    shard: tuple[int, int] = (0, 1),
    run: Callable[[TrainConfig], Any] = train,
    progress: bool | None = None,
) -> tuple[int, int]:
    """Run this shard's unfinished jobs in order; return ``(ran, skipped)``."""
    mine = take_shard(jobs, *shard)
    ran = skipped = 0
    for job in mine:
        if job.is_done:
            skipped += 1
            continue
        logger.info("running %s", job.output_dir.name)
        # a job's folder is named by its arguments: an unfinished one is this job's, so resume
        run(TrainConfig(**job.args, progress=progress, resume=True))
        ran += 1
    return ran, skipped


def delete_incomplete(jobs: Sequence[Job]) -> int:
    """Remove output folders of jobs that started but never wrote ``done``."""
    removed = 0
    for job in jobs:
        if job.output_dir.exists() and not job.is_done:
            shutil.rmtree(job.output_dir)
            removed += 1
    return removed


def load_records(input_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of every ``*/results.jsonl`` below ``input_dir`` (malformed lines skipped)."""
    records = []
    for path in sorted(Path(input_dir).glob("*/results.jsonl")):
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("skipping a malformed line in %s", path)
    return records


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    arr = 100 * np.asarray(values, dtype=float)
    se = arr.std() / np.sqrt(len(arr)) if len(arr) > 1 else 0.0
    return float(arr.mean()), float(se)


def results_table(
    records: Sequence[dict[str, Any]], selection: str = "training_domain"
) -> list[Table]:
    """One table per dataset: test-domain accuracy (%) mean +- standard error over trials."""
    per_cell: dict[tuple[str, str, int], list[float]] = {}
    for (dataset, algorithm, test_env, _trial), runs in group_records(records).items():
        chosen = select_hparams(runs, selection)
        if chosen is not None:
            per_cell.setdefault((dataset, algorithm, test_env), []).append(chosen["test_acc"])
    tables = []
    for dataset in sorted({k[0] for k in per_cell}):
        envs = get_dataset_class(dataset).ENVIRONMENTS
        rows = []
        for algorithm in sorted({k[1] for k in per_cell if k[0] == dataset}):
            cells, means = [], []
            for env_index in range(len(envs)):
                values = per_cell.get((dataset, algorithm, env_index))
                if values:
                    mean, se = _mean_se(values)
                    cells.append(f"{mean:.1f} ± {se:.1f}")
                    means.append(mean)
                else:
                    cells.append("X")
            avg = f"{np.mean(means):.1f}" if len(means) == len(envs) else "X"
            rows.append([algorithm, *cells, avg])
        tables.append(
            Table(["algorithm", *envs, "avg"], rows, title=f"{dataset} ({selection} selection)")
        )
    return tables
