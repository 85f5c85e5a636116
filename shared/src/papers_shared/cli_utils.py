"""Pieces every package CLI shares: logging flags, one-line errors, and the info/demo verbs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from papers_shared.methods import Method

__all__ = [
    "build_package_parser",
    "add_verbosity_flags",
    "configure_logging",
    "run_cli",
    "add_info_command",
    "add_demo_command",
]

logger = logging.getLogger(__name__)


def add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging; tracebacks on error"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


def run_cli(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Call ``handler(args)``; on failure print one error line (traceback with ``-v``) and return 1."""
    configure_logging(getattr(args, "verbose", 0), getattr(args, "quiet", False))
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if getattr(args, "verbose", 0):
            raise
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


def add_info_command(subparsers: argparse._SubParsersAction, method: Method) -> None:
    """``<pkg> info [--json]``: print the package's params/FLOPs tables."""
    parser = subparsers.add_parser(
        "info",
        help="parameters and FLOPs per variant, beside the paper's figures",
        epilog=f"examples:\n  {method.name} info\n  {method.name} info --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handler(args: argparse.Namespace) -> int:
        tables = method.info()
        if args.json:
            print(json.dumps([t.to_dict() for t in tables], indent=2, default=str))
        else:
            print("\n\n".join(t.render() for t in tables))
        return 0

    parser.set_defaults(handler=handler)


def add_demo_command(subparsers: argparse._SubParsersAction, method: Method) -> None:
    """``<pkg> demo [--quick|--full]``: run the miniature of the paper's claim."""
    parser = subparsers.add_parser(
        "demo",
        help="reproduce the paper's central claim in miniature on embedded data",
        epilog=f"examples:\n  {method.name} demo --quick\n  {method.name} demo --full --output-dir runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="full", action="store_false", help="about a minute (default)")
    mode.add_argument(
        "--full", dest="full", action="store_true", help="a few minutes; the README's numbers"
    )
    parser.set_defaults(full=False)  # store_false above would otherwise make full the default
    parser.add_argument("--output-dir", type=Path, default=Path("runs"), help="root of run folders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handler(args: argparse.Namespace) -> int:
        result = method.demo(
            full=args.full, output_root=args.output_dir, progress=args.progress, seed=args.seed
        )
        if args.json:
            print(json.dumps(result.to_dict(), indent=2, default=str))
        else:
            print(result.table.render())
            verdict = "HELD" if result.held else "DID NOT HOLD"
            print(
                f"\nclaim: {result.claim}\n{result.metric}: ours {result.ours:.4g} vs baseline "
                f"{result.baseline:.4g} -> {verdict}"
            )
            if result.run_dir:
                print(f"outputs: {result.run_dir}")
        return 0

    parser.set_defaults(handler=handler)


def parse_and_run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and dispatch to the chosen subcommand's ``handler``."""
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
    return run_cli(args.handler, args)


def build_package_parser(
    method: Method, description: str, examples: Sequence[str]
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A package CLI's parser with ``-v/-q``, ``info`` and ``demo``; add the package's own verbs to
    the returned subparsers. ``examples`` end the top-level ``--help``."""
    parser = argparse.ArgumentParser(
        prog=method.name,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbosity_flags(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="command")
    add_info_command(subparsers, method)
    add_demo_command(subparsers, method)
    return parser, subparsers
