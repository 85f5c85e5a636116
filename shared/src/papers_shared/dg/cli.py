"""The DomainBed-compatible verbs shared by the DG packages: ``train``, ``eval``, ``sweep``,
``collect``.

Flags are kebab-case (``--output-dir``); DomainBed's snake_case spellings (``--output_dir``,
``--data_dir``, ``--test_envs``, ``--hparams_seed``, ...) are accepted as aliases, so a
DomainBed command only changes its program name. This module imports no torch: the handlers
import the harness when they run, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from papers_shared.cli_utils import add_command, add_run_flags, config_from_args, flag_names

__all__ = ["add_dg_commands", "DATASET_NAMES", "TRAIN_FLAGS", "shard_arg"]

# The harness's datasets (``papers_shared.dg.datasets.DATASETS``), listed here so that building
# the parser needs no torch import; a test checks both lists agree.
DATASET_NAMES = (
    "ColoredDigits",
    "DebugDomains",
    "DomainNet",
    "OfficeHome",
    "PACS",
    "RotatedDigits",
    "TerraIncognita",
    "VLCS",
)
SELECTION_NAMES = ("leave_one_out", "oracle", "training_domain")
PRECISION_NAMES = ("auto", "fp32", "bf16", "fp16")


def shard_arg(text: str) -> tuple[int, int]:
    """``--shard i/n`` (0-based: 0 <= i < n) with a clear message on a bad value."""
    from papers_shared.sharding import parse_shard

    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{err} (shards are 0-based: --shard 0/4 ... --shard 3/4)"
        ) from err


def _flag(parser: Any, name: str, *args: Any, **kwargs: Any) -> None:
    """``--kebab-name`` plus its DomainBed ``--snake_name`` alias (when it differs)."""
    parser.add_argument(*flag_names(name, dg_aliases=True), *args, **kwargs)


def _precision(args: argparse.Namespace) -> str:
    amp = getattr(args, "amp", None)
    if amp is not None:
        import warnings

        warnings.warn("--amp is deprecated; use --precision", DeprecationWarning, stacklevel=2)
        return "fp32" if amp == "none" else amp
    return args.precision


# argparse dest -> TrainConfig field of the ``train`` verb (``--config`` files use the fields)
TRAIN_FLAGS = (
    "dataset",
    "algorithm",
    "data_dir",
    "test_envs",
    "hparams",
    "hparams_seed",
    "trial_seed",
    "seed",
    "steps",
    "checkpoint_freq",
    "holdout_fraction",
    "output_dir",
    "skip_model_save",
    "save_model_every_checkpoint",
    "device",
    "progress",
    "precision",
    "overwrite",
    "resume",
    "max_nonfinite",
    "task",
)


def _train(args: argparse.Namespace) -> int:
    from papers_shared.dg.trainer import TrainConfig, train

    if getattr(args, "amp", None) is not None:
        args.precision = _precision(args)
        explicit = getattr(args, "explicit_dests", None)
        if explicit is not None:
            args.explicit_dests = frozenset(explicit | {"precision"})
    cfg = config_from_args(TrainConfig, args, flags=TRAIN_FLAGS)
    records = train(cfg)  # data-parallel under torchrun / accelerate launch (WORLD_SIZE > 1)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # every rank holds the same records; rank 0 reports them
    if not records:
        print(f"nothing to do: {args.output_dir} holds no records")
        return 0
    last = {k: v for k, v in records[-1].items() if k not in ("hparams", "args")}
    print(json.dumps(last, sort_keys=True))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from papers_shared.dg.evaluate import evaluate_checkpoint

    accuracies = evaluate_checkpoint(
        args.model,
        args.dataset,
        args.data_dir,
        args.batch_size,
        args.device,
        trust_checkpoint=args.trust_checkpoint,
    )
    if getattr(args, "json", False):
        print(json.dumps(accuracies, indent=2, sort_keys=True))
    else:
        for name, acc in accuracies.items():
            print(f"{name}\t{100 * acc:.2f}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from papers_shared.dg.sweep import delete_incomplete, make_jobs, run_jobs

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
    from papers_shared.dg.sweep import load_records, results_table

    records = load_records(args.input_dir)
    if not records:
        raise FileNotFoundError(f"no */results.jsonl records under {args.input_dir}")
    print(f"{len(records)} records")
    for method in args.selection:
        for table in results_table(records, method):
            print(table.render() + "\n")
    return 0


def add_dg_commands(
    subparsers: argparse._SubParsersAction,
    prog: str,
    algorithm: str,
    setup: Callable[[], object] | None = None,
) -> None:
    """Add ``train``, ``eval``, ``sweep`` and ``collect`` to a package CLI whose main algorithm
    is ``algorithm``; every flag shows its default, and ``-v``/``-q``/``--json`` work after the
    verb.

    ``setup`` runs before any of these verbs (e.g. importing the module that registers the
    package's algorithms), so building the parser stays free of heavy imports.
    """
    datasets = list(DATASET_NAMES)

    def handler(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        def wrapped(args: argparse.Namespace) -> int:
            if setup is not None:
                setup()
            return run(args)

        return wrapped

    p = add_command(
        subparsers,
        "train",
        help="one DomainBed training run (results.jsonl, model.pkl, done)",
        description="One DomainBed training run: one minibatch per training domain per step, "
        "accuracy of every in/out split at each checkpoint, records in results.jsonl. A folder "
        "that already holds a run is refused unless --resume or --overwrite is given. "
        "DomainBed's snake_case flag spellings (--output_dir, --test_envs, ...) work too.",
        examples=[
            f"torchrun --nproc_per_node 2 -m {prog}.cli train --data-dir data --dataset PACS "
            "--test-envs 0 --precision bf16 --output-dir out",
            f"{prog} train --dataset RotatedDigits --test-envs 0 --steps 200 --output-dir out",
        ],
    )
    add_run_flags(p, output_dir_default="train_output", dg_aliases=True)
    group = p.add_argument_group("DomainBed")
    _flag(group, "--data-dir", default=None, help="folder holding the dataset folders (PACS/...)")
    group.add_argument("--dataset", default="RotatedDigits", choices=datasets, help="domain list")
    group.add_argument("--algorithm", default=algorithm, help="registered algorithm class name")
    group.add_argument(
        "--task",
        default="domain_generalization",
        choices=["domain_generalization"],
        help="DomainBed task (only domain generalization)",
    )
    group.add_argument("--hparams", default=None, help="JSON object of hyper-parameter overrides")
    _flag(group, "--hparams-seed", type=int, default=0, help="0: defaults, else a random draw")
    _flag(group, "--trial-seed", type=int, default=0, help="seeds the in/out splits")
    group.add_argument("--steps", type=int, default=None, help="None: the dataset's N_STEPS")
    _flag(group, "--checkpoint-freq", type=int, default=None, help="None: the dataset's")
    _flag(group, "--test-envs", type=int, nargs="+", default=[0], help="held-out domain indices")
    _flag(group, "--holdout-fraction", type=float, default=0.2, help="validation share per domain")
    _flag(group, "--skip-model-save", action="store_true", help="write no model.pkl")
    _flag(
        group,
        "--save-model-every-checkpoint",
        action="store_true",
        help="also write model_step<N>.pkl at each checkpoint",
    )
    group.add_argument(
        "--amp", default=None, choices=["none", "bf16", "fp16"], help=argparse.SUPPRESS
    )
    group = p.add_argument_group("run folder and failures")
    run_mode = group.add_mutually_exclusive_group()
    run_mode.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir (keeps records)"
    )
    run_mode.add_argument(
        "--overwrite", action="store_true", help="replace the run in --output-dir"
    )
    group.add_argument(
        "--max-nonfinite",
        type=int,
        default=3,
        help="stop after this many non-finite losses in a row (each skipped without changes)",
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (None: when stderr is a terminal)",
    )
    p.set_defaults(handler=handler(_train))

    p = add_command(
        subparsers,
        "eval",
        help="accuracy of a saved model on every domain of a dataset",
        description="Accuracy of a saved model (model.pkl, or the run folder holding it) on "
        "every domain, without augmentation.",
        examples=[
            f"{prog} eval --model out/model.pkl --data-dir data --dataset PACS --json",
            f"{prog} eval --model out --dataset RotatedDigits",
        ],
    )
    p.add_argument(
        "--model", required=True, help=f"model.pkl or the run folder `{prog} train` wrote"
    )
    p.add_argument("--dataset", default=None, choices=datasets, help="None: the run's dataset")
    _flag(p, "--data-dir", default=None, help="None: the run's data folder")
    _flag(p, "--batch-size", type=int, default=64, help="evaluation batch size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle the whole file, running code stored in it; only for files from a source "
        "you trust",
    )
    p.set_defaults(handler=handler(_eval))

    p = add_command(
        subparsers,
        "sweep",
        help="random hparam search x trials x test domains; resumable; --shard i/n",
        description="DomainBed's sweep: each job's folder is named by its arguments; finished "
        "jobs are skipped and unfinished ones resume from their last checkpoint.",
        examples=[
            f"{prog} sweep launch --data-dir data --datasets PACS --output-dir sweep --shard 0/4",
            f"{prog} sweep launch --datasets RotatedDigits --n-hparams 2 --n-trials 1 "
            "--steps 100 --single-test-envs --output-dir sweep",
        ],
    )
    p.add_argument(
        "command",
        nargs="?",
        default="launch",
        choices=["launch", "delete_incomplete"],
        help="run the jobs, or delete unfinished job folders",
    )
    p.add_argument(
        "--datasets", nargs="+", default=["RotatedDigits"], choices=datasets, help="domain lists"
    )
    p.add_argument("--algorithms", nargs="+", default=[algorithm], help="algorithm class names")
    _flag(p, "--data-dir", default=None, help="folder holding the dataset folders")
    _flag(p, "--output-dir", required=True, help="sweep folder (one sub-folder per job)")
    _flag(p, "--n-hparams-from", type=int, default=0, help="first hparams draw")
    _flag(p, "--n-hparams", type=int, default=20, help="hparams draws (end, exclusive)")
    _flag(p, "--n-trials-from", type=int, default=0, help="first trial")
    _flag(p, "--n-trials", type=int, default=3, help="trials (end, exclusive)")
    p.add_argument("--steps", type=int, default=None, help="None: each dataset's N_STEPS")
    p.add_argument("--hparams", default=None, help="JSON object of overrides for every job")
    _flag(p, "--holdout-fraction", type=float, default=0.2, help="validation share per domain")
    _flag(p, "--single-test-envs", action="store_true", help="no pairs of test domains")
    _flag(p, "--skip-model-save", action="store_true", help="jobs write no model.pkl")
    _flag(p, "--skip-confirmation", action="store_true", help="accepted for DomainBed")
    _flag(p, "--command-launcher", default="local", help="accepted for DomainBed")
    p.add_argument(
        "--shard",
        type=shard_arg,
        default=(0, 1),
        help="run jobs i, i+n, ... of the list (0-based i/n)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (None: when stderr is a terminal)",
    )
    p.set_defaults(handler=handler(_sweep))

    p = add_command(
        subparsers,
        "collect",
        help="results table with model selection",
        description="Test-domain accuracy (%%) per dataset, mean +- standard error over trials.",
        examples=[
            f"{prog} collect --input-dir sweep --selection oracle",
            f"{prog} collect --input-dir sweep",
        ],
    )
    _flag(p, "--input-dir", type=Path, required=True, help="sweep folder")
    p.add_argument(
        "--selection",
        nargs="+",
        default=["training_domain"],
        choices=SELECTION_NAMES,
        help="model selection method(s)",
    )
    p.add_argument(
        "--latex", action="store_true", help="accepted for DomainBed (Markdown is printed)"
    )
    p.set_defaults(handler=handler(_collect))
