"""``ridg`` command line: info, demo, and DomainBed's train / eval / sweep / collect."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from papers_shared.cli_utils import build_package_parser, parse_and_run
from papers_shared.dg.cli import add_dg_commands
from ridg.plugin import METHOD

__all__ = ["build_parser", "main"]


def _register_algorithm() -> None:
    import ridg.algorithm  # noqa: F401  (registers RIDG with the harness)


def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "RIDG: domain generalization via rationale invariance (DomainBed-compatible).",
        [
            "ridg demo --quick",
            "ridg train --dataset RotatedDigits --test-envs 0 --steps 200 --output-dir out",
        ],
    )
    add_dg_commands(sub, "ridg", "RIDG", setup=_register_algorithm)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
