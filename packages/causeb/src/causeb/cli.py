"""``causeb info | demo | train | eval | sweep | collect | export``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from causeb.plugin import METHOD
from papers_shared.cli_utils import add_command, build_package_parser, parse_and_run
from papers_shared.dg.cli import add_dg_commands

__all__ = ["build_parser", "main"]


def _register_algorithm() -> None:
    import causeb.algorithm  # noqa: F401  (registers CauseEB / CausEB with the harness)


def _export(args: argparse.Namespace) -> int:
    import torch

    from causeb.convert import load_domainbed_checkpoint

    algorithm = load_domainbed_checkpoint(args.checkpoint, trust_checkpoint=args.trust_checkpoint)
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
    add_dg_commands(sub, "causeb", "CauseEB", setup=_register_algorithm)
    p = add_command(
        sub,
        "export",
        help="turn a DomainBed model.pkl into a plain inference model's state dict",
        description="Keep what predict uses (stem, causal trunk, class head) as a torchvision "
        "ResNet (or the small CNN + Linear) state dict.",
        examples=[
            "causeb export out/model.pkl --output deployed.pt",
            "causeb export out --output resnet18_causeb.pt",
        ],
    )
    p.add_argument("checkpoint", type=Path, help="DomainBed model.pkl, or the run folder")
    p.add_argument("--output", type=Path, required=True, help="where to write the state dict")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle the whole file, running code stored in it; only for files from a source "
        "you trust",
    )
    p.set_defaults(handler=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
