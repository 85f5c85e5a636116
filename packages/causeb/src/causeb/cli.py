"""``causeb info | demo | train | sweep | collect | export``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from causeb.plugin import METHOD
from papers_shared.cli_utils import build_package_parser, parse_and_run
from papers_shared.dg.cli import add_dg_commands

__all__ = ["build_parser", "main"]


def _export(args: argparse.Namespace) -> int:
    import torch

    from causeb.convert import load_domainbed_checkpoint

    algorithm = load_domainbed_checkpoint(args.checkpoint)
    model = algorithm.export()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.output)
    print(
        f"wrote {type(model).__name__} state dict ({len(model.state_dict())} tensors) to {args.output}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "CausEB (IJCV 2024): causal early-branching network with random domain sampling, "
        "on a DomainBed-compatible harness.",
        ["causeb info", "causeb demo --quick"],
    )
    add_dg_commands(sub, "causeb", "CauseEB")
    p = sub.add_parser(
        "export",
        help="turn a DomainBed model.pkl into a plain inference model's state dict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  causeb export out/model.pkl --output deployed.pt\n"
        "  causeb export sweep/abc123/model.pkl --output resnet18_causeb.pt",
    )
    p.add_argument("checkpoint", type=Path, help="DomainBed checkpoint (model.pkl)")
    p.add_argument("--output", type=Path, required=True, help="where to write the state dict")
    p.set_defaults(handler=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
