"""The umbrella ``papers`` command: list, info and demo over every installed method package."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from papers_shared.cli_utils import HelpFormatter, add_command, add_global_flags, parse_and_run
from papers_shared.methods import DemoResult, Method, Table, discover_methods
from papers_shared.verdict import MIN_SEEDS, ArmStats

__all__ = ["main", "run_demos"]

KNOWN_PACKAGES = (
    "dyt-tuning",
    "groupmixformer",
    "causeb",
    "ridg",
    "headartist",
    "instructdet",
    "softinfonce",
    "etris",
    "skvg",
    "dsp-zsl",
)
NOTHING_INSTALLED = "no method package is installed (try: pip install ridg, or uv sync in the repo)"


def _select(names: Sequence[str]) -> dict[str, Method | Exception | None]:
    found = discover_methods()
    if not names:
        return dict(found)
    return {n: found.get(n) for n in names}


def _cmd_list(args: argparse.Namespace) -> int:
    found = discover_methods()
    if not found:
        print(NOTHING_INSTALLED)
        return 0
    rows = [
        [n, m.title if isinstance(m, Method) else f"failed to load: {m}"] for n, m in found.items()
    ]
    print(Table(["package", "paper"], rows).render())
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    selected = _select(args.packages)
    if not selected:
        print(NOTHING_INSTALLED)
        return 0
    status = 0
    for name, method in selected.items():
        print(f"## {name}\n")
        if not isinstance(method, Method):
            print(f"not available: {method or 'not installed'}\n")
            status = 1
            continue
        print("\n\n".join(t.render() for t in method.info()) + "\n")
    return status


def _arm(stats: ArmStats) -> str:
    return f"{stats.mean:.4g} +- {stats.std:.2g} (n={len(stats.values)})"


def _result_rows(name: str, result: DemoResult, seconds: float) -> list[list[str]]:
    if not result.verdicts:
        verdict = "held" if result.held else "did not hold"
        return [
            [
                name,
                result.claim,
                f"{result.ours:.4g}",
                f"{result.baseline:.4g}",
                "-",
                f"{verdict} (one run, no margin)",
                f"{seconds:.0f}",
            ]
        ]
    rows = []
    for v in result.verdicts:
        verdict = v.verdict
        if v.quick and verdict == "not shown" and v.n < MIN_SEEDS:
            verdict = f"not shown (quick: {v.n} seeds)"
        rows.append(
            [
                name,
                f"{result.claim} [{v.metric}]",
                f"{v.method.name} {_arm(v.method)}",
                f"{v.baseline.name} {_arm(v.baseline)}",
                f"{v.margin:g}",
                verdict,
                f"{seconds:.0f}",
            ]
        )
    return rows


def run_demos(
    selected: dict[str, Method | Exception | None],
    *,
    full: bool,
    output_root: Path,
    progress: bool | None,
    seed: int = 0,
) -> tuple[Table, list[dict]]:
    """Run each demo, catching failures, and return the summary table (mean +- std per arm, the
    margin and the verdict of every claim) plus per-package records."""
    rows: list[list[str]] = []
    records: list[dict] = []
    for name, method in selected.items():
        start = time.perf_counter()
        if not isinstance(method, Method):
            reason = "not installed" if method is None else f"failed to load: {method}"
            rows.append([name, "-", "-", "-", "-", reason, "-"])
            records.append({"package": name, "status": reason})
            continue
        print(f"[papers] running {name} demo ({'full' if full else 'quick'})", file=sys.stderr)
        try:
            result = method.demo(full=full, output_root=output_root, progress=progress, seed=seed)
        except Exception as err:  # one failing demo must not stop the others
            seconds = time.perf_counter() - start
            message = f"error: {type(err).__name__}: {err}"
            rows.append([name, "-", "-", "-", "-", message, f"{seconds:.0f}"])
            records.append({"package": name, "status": "error", "error": repr(err)})
            continue
        seconds = time.perf_counter() - start
        rows.extend(_result_rows(name, result, seconds))
        records.append({"package": name, "status": "ok", "seconds": seconds, **result.to_dict()})
    table = Table(
        ["package", "claim", "method (mean +- std)", "baseline (mean +- std)", "margin", "verdict",
         "seconds"],
        rows,
        title="papers demo",
        notes=[
            "verdict: held when the mean paired difference over >= 3 seeds exceeds the margin and "
            "twice its standard error; reversed when the baseline wins that way; else not shown"
        ],
    )  # fmt: skip
    return table, records


def _cmd_demo(args: argparse.Namespace) -> int:
    selected = _select(args.packages)
    if not selected:
        print(NOTHING_INSTALLED)
        return 0
    table, records = run_demos(
        selected,
        full=args.full,
        output_root=args.output_dir,
        progress=args.progress,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        print(table.render())
    return 0 if all(r["status"] == "ok" for r in records) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="papers",
        description="Run and inspect the installed paper implementations.",
        epilog="examples:\n  papers list\n  papers demo ridg causeb --full",
        formatter_class=HelpFormatter,
    )
    add_global_flags(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="command")
    p = add_command(
        sub, "list", help="installed method packages", examples=["papers list", "papers list -q"]
    )
    p.set_defaults(handler=_cmd_list)
    p = add_command(
        sub,
        "info",
        help="params/FLOPs tables of installed packages",
        examples=["papers info", "papers info ridg groupmixformer"],
    )
    p.add_argument("packages", nargs="*", help=f"any of: {', '.join(KNOWN_PACKAGES)}")
    p.set_defaults(handler=_cmd_info)
    p = add_command(
        sub,
        "demo",
        help="run each package's demo and summarise whether its claim held",
        examples=["papers demo --quick", "papers demo ridg causeb --full --output-dir runs"],
    )
    p.add_argument("packages", nargs="*", help="default: every installed package")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", dest="full", action="store_false", help="about a minute a package, fewer seeds"
    )
    mode.add_argument("--full", dest="full", action="store_true", help="the ten-minute miniatures")
    p.set_defaults(full=False)  # store_false above would otherwise make full the default
    p.add_argument("--output-dir", type=Path, default=Path("runs"), help="root of run folders")
    p.add_argument("--seed", type=int, default=0, help="first seed of every demo")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (unset: only when stderr is a terminal)",
    )
    p.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
