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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_dg_commands", "DATASET_NAMES", "HelpFormatter", "add_global_flags", "shard_arg"]

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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every flag's help; description and examples kept as written."""


def shard_arg(text: str) -> tuple[int, int]:
    """``--shard i/n`` (0-based: 0 <= i < n) with a clear message on a bad value."""
    from papers_shared.sharding import parse_shard

    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{err} (shards are 0-based: --shard 0/4 ... --shard 3/4)"
        ) from err


def add_global_flags(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """``-v/--verbose``, ``-q/--quiet`` (and ``--json``) usable after the subcommand too."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more logging; tracebacks on error",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings"
    )
    if json_flag:
        parser.add_argument(
            "--json", action="store_true", default=False, help="machine-readable output"
        )


def _flag(parser: argparse.ArgumentParser, name: str, *args: Any, **kwargs: Any) -> None:
    """``--kebab-name`` plus its DomainBed ``--snake_name`` alias (when it differs)."""
    snake = "--" + name[2:].replace("-", "_")
    names = [name] if snake == name else [name, snake]
    parser.add_argument(*names, *args, **kwargs)


def _precision(args: argparse.Namespace) -> str:
    amp = getattr(args, "amp", None)
    if amp is not None:
        import warnings

        warnings.warn("--amp is deprecated; use --precision", DeprecationWarning, stacklevel=2)
        return "fp32" if amp == "none" else amp
    return args.precision


def _report(args: argparse.Namespace, values: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(values, indent=2, sort_keys=True, default=str))
    else:
        for key, value in sorted(values.items()):
            print(f"{key}\t{value:.4f}" if isinstance(value, float) else f"{key}\t{value}")


def _train(args: argparse.Namespace) -> int:
    from papers_shared.dg.trainer import TrainConfig, train

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
        precision=_precision(args),
        overwrite=args.overwrite,
        resume=args.resume,
        max_nonfinite=args.max_nonfinite,
    )
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
    if args.json:
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


def _examples(lines: Sequence[str]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_dg_commands(
    subparsers: argparse._SubParsersAction,
    prog: str,
    algorithm: str,
    setup: Callable[[], object] | None = None,
) -> None:
    """Add ``train``, ``eval``, ``sweep`` and ``collect`` to a package CLI whose main algorithm
    is ``algorithm``; every flag shows its default, and ``-v``/``-q`` work after the verb.

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

    p = subparsers.add_parser(
        "train",
        help="one DomainBed training run (results.jsonl, model.pkl, done)",
        description="One DomainBed training run: one minibatch per training domain per step, "
        "accuracy of every in/out split at each checkpoint, records in results.jsonl. A folder "
        "that already holds a run is refused unless --resume or --overwrite is given.",
        formatter_class=HelpFormatter,
        epilog=_examples(
            [
                f"torchrun --nproc_per_node 2 -m {prog}.cli train --data-dir data --dataset PACS "
                "--test-envs 0 --precision bf16 --output-dir out",
                f"{prog} train --dataset RotatedDigits --test-envs 0 --steps 200 --output-dir out",
            ]
        ),
    )
    _flag(p, "--data-dir", default=None, help="folder holding the dataset folders (PACS/, ...)")
    p.add_argument("--dataset", default="RotatedDigits", choices=datasets, help="domain list")
    p.add_argument("--algorithm", default=algorithm, help="registered algorithm class name")
    p.add_argument(
        "--task",
        default="domain_generalization",
        choices=["domain_generalization"],
        help="DomainBed task (only domain generalization)",
    )
    p.add_argument("--hparams", default=None, help="JSON object of hyper-parameter overrides")
    _flag(p, "--hparams-seed", type=int, default=0, help="0: defaults, else a random draw")
    _flag(p, "--trial-seed", type=int, default=0, help="seeds the in/out splits")
    p.add_argument("--seed", type=int, default=0, help="seeds everything else")
    p.add_argument("--steps", type=int, default=None, help="None: the dataset's N_STEPS")
    _flag(p, "--checkpoint-freq", type=int, default=None, help="None: the dataset's")
    _flag(p, "--test-envs", type=int, nargs="+", default=[0], help="held-out domain indices")
    _flag(p, "--output-dir", default="train_output", help="run folder")
    _flag(p, "--holdout-fraction", type=float, default=0.2, help="validation share per domain")
    _flag(p, "--skip-model-save", action="store_true", help="write no model.pkl")
    _flag(
        p,
        "--save-model-every-checkpoint",
        action="store_true",
        help="also write model_step<N>.pkl at each checkpoint",
    )
    p.add_argument(
        "--device", default="auto", help="auto (cuda:LOCAL_RANK if any, else cpu), cpu, cuda:N"
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_NAMES,
        help="auto: bf16 on CUDA with bf16 support, else fp32; fp16 adds loss scaling (CUDA)",
    )
    p.add_argument("--amp", default=None, choices=["none", "bf16", "fp16"], help=argparse.SUPPRESS)
    run_mode = p.add_mutually_exclusive_group()
    run_mode.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir (keeps records)"
    )
    run_mode.add_argument(
        "--overwrite", action="store_true", help="replace the run in --output-dir"
    )
    p.add_argument(
        "--max-nonfinite",
        type=int,
        default=3,
        help="stop after this many non-finite losses in a row (each skipped without changes)",
    )
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", default=None, help="no bar"
    )
    add_global_flags(p, json_flag=False)
    p.set_defaults(handler=handler(_train))

    p = subparsers.add_parser(
        "eval",
        help="accuracy of a saved model on every domain of a dataset",
        description="Accuracy of a saved model (model.pkl, or the run folder holding it) on "
        "every domain, without augmentation.",
        formatter_class=HelpFormatter,
        epilog=_examples(
            [
                f"{prog} eval --model out --dataset RotatedDigits",
                f"{prog} eval --model out/model.pkl --data-dir data --dataset PACS --json",
            ]
        ),
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
        help="allow full unpickling of the file (runs code from it: only for files you trust)",
    )
    add_global_flags(p)
    p.set_defaults(handler=handler(_eval))

    p = subparsers.add_parser(
        "sweep",
        help="random hparam search x trials x test domains; resumable; --shard i/n",
        description="DomainBed's sweep: each job's folder is named by its arguments; finished "
        "jobs are skipped and unfinished ones resume from their last checkpoint.",
        formatter_class=HelpFormatter,
        epilog=_examples(
            [
                f"{prog} sweep launch --datasets RotatedDigits --n-hparams 2 --n-trials 1 "
                "--steps 100 --single-test-envs --output-dir sweep",
                f"{prog} sweep launch --data-dir data --datasets PACS --output-dir sweep "
                "--shard 0/4",
            ]
        ),
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
        "--no-progress", dest="progress", action="store_false", default=None, help="no bar"
    )
    add_global_flags(p, json_flag=False)
    p.set_defaults(handler=handler(_sweep))

    p = subparsers.add_parser(
        "collect",
        help="results table with model selection",
        description="Test-domain accuracy (%%) per dataset, mean +- standard error over trials.",
        formatter_class=HelpFormatter,
        epilog=_examples(
            [
                f"{prog} collect --input-dir sweep",
                f"{prog} collect --input-dir sweep --selection oracle",
            ]
        ),
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
    add_global_flags(p, json_flag=False)
    p.set_defaults(handler=handler(_collect))
