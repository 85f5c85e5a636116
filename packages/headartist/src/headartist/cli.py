"""``headartist`` command line: info and demo."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from headartist.plugin import METHOD
from papers_shared.cli_utils import build_package_parser, parse_and_run

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser, _ = build_package_parser(
        METHOD,
        "HeadArtist: self score distillation on diffusers modules (building blocks).",
        ["headartist info", "headartist demo --quick"],
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
