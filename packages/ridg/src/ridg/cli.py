"""``ridg`` command line: info, demo, and DomainBed's train / sweep / collect, plus eval."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from papers_shared.cli_utils import build_package_parser, parse_and_run
from papers_shared.dg import DATASETS
from papers_shared.dg.cli import add_dg_commands
from ridg.evaluate import evaluate_checkpoint
from ridg.plugin import METHOD

__all__ = ["build_parser", "main"]


def _eval(args: argparse.Namespace) -> int:
    accuracies = evaluate_checkpoint(
        args.model, args.dataset, args.data_dir, args.batch_size, args.device
    )
    if args.json:
        print(json.dumps(accuracies, indent=2, sort_keys=True))
    else:
        for name, acc in accuracies.items():
            print(f"{name}\t{100 * acc:.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser, sub = build_package_parser(
        METHOD,
        "RIDG: domain generalization via rationale invariance (DomainBed-compatible).",
        [
            "ridg demo --quick",
            "ridg train --dataset RotatedDigits --test_envs 0 --steps 200 --output_dir out",
        ],
    )
    add_dg_commands(sub, "ridg", "RIDG")
    p = sub.add_parser(
        "eval",
        help="accuracy of a saved model.pkl on every domain of a dataset",
        formatter_class=fmt,
        epilog="examples:\n  ridg eval --model out/model.pkl --dataset RotatedDigits\n"
        "  ridg eval --model out/model.pkl --data_dir data --dataset PACS --json",
    )
    p.add_argument("--model", required=True, help="DomainBed checkpoint written by `ridg train`")
    p.add_argument("--dataset", default=None, choices=sorted(DATASETS), help="default: the run's")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
