"""A DomainBed-compatible command line shared by the DG packages: ``train``, ``sweep``, ``collect``.

Flags keep DomainBed's underscore names so users of the official forks only change the command.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from papers_shared.dg.algorithms import AMP_DTYPES
from papers_shared.dg.datasets import DATASETS
from papers_shared.dg.selection import SELECTION_METHODS
from papers_shared.dg.sweep import (
    delete_incomplete,
    load_records,
    make_jobs,
    results_table,
    run_jobs,
)
from papers_shared.dg.trainer import TrainConfig, train
from papers_shared.sharding import parse_shard

__all__ = ["add_dg_commands"]


def _train(args: argparse.Namespace) -> int:
    cfg = TrainConfig(
        dataset=args.dataset,
        algorithm=args.algorithm,
        data_dir=args.data_dir,
        test_envs=args.test_envs,
        hparams=args.hparams,
        hparams_seed=args.hparams_seed,
        trial_seed=args.trial_seed,
        seed=args.seed,
        steps=args.steps,
        checkpoint_freq=args.checkpoint_freq,
        holdout_fraction=args.holdout_fraction,
        output_dir=args.output_dir,
        skip_model_save=args.skip_model_save,
        save_model_every_checkpoint=args.save_model_every_checkpoint,
        device=args.device,
        progress=args.progress,
        amp=args.amp,
    )
    records = train(cfg)  # data-parallel under torchrun / accelerate launch (WORLD_SIZE > 1)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # every rank holds the same records; rank 0 reports them
    last = records[-1]
    print(
        json.dumps({k: v for k, v in last.items() if k not in ("hparams", "args")}, sort_keys=True)
    )
    return 0


def _sweep(args: argparse.Namespace) -> int:
    jobs = make_jobs(
        algorithms=args.algorithms,
        datasets=args.datasets,
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        n_hparams_from=args.n_hparams_from,
        n_hparams=args.n_hparams,
        n_trials_from=args.n_trials_from,
        n_trials=args.n_trials,
        steps=args.steps,
        hparams=args.hparams,
        holdout_fraction=args.holdout_fraction,
        single_test_envs=args.single_test_envs,
        skip_model_save=args.skip_model_save,
    )
    if args.command == "delete_incomplete":
        print(f"deleted {delete_incomplete(jobs)} incomplete job folder(s)")
        return 0
    done = sum(j.is_done for j in jobs)
    print(f"{len(jobs)} jobs, {done} done, shard {args.shard[0]}/{args.shard[1]}")
    ran, skipped = run_jobs(jobs, args.shard, progress=args.progress)
    print(f"ran {ran}, skipped {skipped} finished")
    return 0


def _collect(args: argparse.Namespace) -> int:
    records = load_records(args.input_dir)
    if not records:
        raise FileNotFoundError(f"no */results.jsonl records under {args.input_dir}")
    print(f"{len(records)} records")
    for method in args.selection:
        for table in results_table(records, method):
            print(table.render() + "\n")
    return 0


def add_dg_commands(subparsers: argparse._SubParsersAction, prog: str, algorithm: str) -> None:
    """Add ``train``, ``sweep`` and ``collect`` to a package CLI whose main algorithm is ``algorithm``."""
    fmt = argparse.RawDescriptionHelpFormatter
    datasets = sorted(DATASETS)

    p = subparsers.add_parser(
        "train",
        help="one DomainBed training run (results.jsonl, model.pkl, done)",
        formatter_class=fmt,
        epilog=f"examples:\n  torchrun --nproc_per_node 2 -m {prog}.cli train --data_dir data "
        "--dataset PACS --test_envs 0 --amp bf16 --output_dir out\n"
        f"  {prog} train --dataset RotatedDigits --test_envs 0 --steps 200 --output_dir out",
    )
    p.add_argument("--data_dir", default=None)
    p.add_argument("--dataset", default="RotatedDigits", choices=datasets)
    p.add_argument("--algorithm", default=algorithm)
    p.add_argument("--task", default="domain_generalization", choices=["domain_generalization"])
    p.add_argument("--hparams", default=None, help="JSON object of hyper-parameter overrides")
    p.add_argument("--hparams_seed", type=int, default=0, help="0 = defaults, else a random draw")
    p.add_argument("--trial_seed", type=int, default=0, help="seeds the in/out splits")
    p.add_argument("--seed", type=int, default=0, help="seeds everything else")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--checkpoint_freq", type=int, default=None)
    p.add_argument("--test_envs", type=int, nargs="+", default=[0])
    p.add_argument("--output_dir", default="train_output")
    p.add_argument("--holdout_fraction", type=float, default=0.2)
    p.add_argument("--skip_model_save", action="store_true")
    p.add_argument("--save_model_every_checkpoint", action="store_true")
    p.add_argument(
        "--device", default=None, help="default: cuda (cuda:LOCAL_RANK) if any, else cpu"
    )
    p.add_argument(
        "--amp",
        default="none",
        choices=list(AMP_DTYPES),
        help="autocast for training steps: bf16, or fp16 with loss scaling (CUDA only)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.set_defaults(handler=_train)

    p = subparsers.add_parser(
        "sweep",
        help="random hparam search x trials x test domains; resumable; --shard i/n",
        formatter_class=fmt,
        epilog=f"examples:\n  {prog} sweep launch --datasets RotatedDigits --n_hparams 2 --n_trials 1 --steps 100 "
        f"--single_test_envs --output_dir sweep\n"
        f"  {prog} sweep launch --data_dir data --datasets PACS --output_dir sweep --shard 0/4",
    )
    p.add_argument("command", nargs="?", default="launch", choices=["launch", "delete_incomplete"])
    p.add_argument("--datasets", nargs="+", default=["RotatedDigits"], choices=datasets)
    p.add_argument("--algorithms", nargs="+", default=[algorithm])
    p.add_argument("--data_dir", default=None)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--n_hparams_from", type=int, default=0)
    p.add_argument("--n_hparams", type=int, default=20)
    p.add_argument("--n_trials_from", type=int, default=0)
    p.add_argument("--n_trials", type=int, default=3)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--hparams", default=None)
    p.add_argument("--holdout_fraction", type=float, default=0.2)
    p.add_argument("--single_test_envs", action="store_true")
    p.add_argument("--skip_model_save", action="store_true")
    p.add_argument(
        "--skip_confirmation", action="store_true", help="accepted for DomainBed compatibility"
    )
    p.add_argument(
        "--command_launcher", default="local", help="accepted for DomainBed compatibility"
    )
    p.add_argument("--shard", type=parse_shard, default=(0, 1), help="run jobs i, i+n, ... (i/n)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.set_defaults(handler=_sweep)

    p = subparsers.add_parser(
        "collect",
        help="results table with model selection",
        formatter_class=fmt,
        epilog=f"examples:\n  {prog} collect --input_dir sweep\n  {prog} collect --input_dir sweep --selection oracle",
    )
    p.add_argument("--input_dir", type=Path, required=True)
    p.add_argument(
        "--selection", nargs="+", default=["training_domain"], choices=sorted(SELECTION_METHODS)
    )
    p.add_argument(
        "--latex",
        action="store_true",
        help="accepted for DomainBed compatibility (Markdown is printed)",
    )
    p.set_defaults(handler=_collect)
