"""``dsp-zsl`` command line: train, eval, info, demo."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from dsp_zsl.config import BASES, ENHANCE_MODES, EVOLVE_MODES, SELECTION_MODES
from dsp_zsl.plugin import METHOD
from papers_shared.cli_utils import (
    add_command,
    add_run_flags,
    add_trainer_flags,
    build_package_parser,
    config_from_args,
    load_config_file,
    parse_and_run,
    trainer_config_from_args,
)

__all__ = ["build_parser", "main"]

SELECTION_NOTE = {
    "val": "epoch chosen on a validation split of the training data (no test data used)",
    "test": "epoch chosen on the test split (the baselines' protocol; optimistic)",
    "last": "last epoch",
}


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data and model")
    g.add_argument("--dataset", default="CUB", help="xlsa17 folder name: CUB, SUN, AWA2, ...")
    g.add_argument("--data-root", default="data", help="folder holding <dataset>/res101.mat")
    g.add_argument("--class-embedding", choices=("att", "sent"), default="att",
                   help="attributes or CUB sentence embeddings (sent_splits.mat)")  # fmt: skip
    g.add_argument("--validation", action="store_true",
                   help="train on train_loc, test on the validation classes (val_loc)")  # fmt: skip
    g.add_argument("--base", choices=BASES, default="tfvaegan", help="base generator")
    g.add_argument("--preset", action=argparse.BooleanOptionalAction, default=True,
                   help="start from the base's released settings for CUB / SUN / AWA2")  # fmt: skip
    g.add_argument("--use-dsp", action=argparse.BooleanOptionalAction, default=True,
                   help="plug DSP in (--no-use-dsp trains the plain base, with --enhance none)")  # fmt: skip
    g.add_argument("--alpha", type=float, default=0.5,
                   help="unseen condition alpha * a_u + (1 - alpha) * VOPE(a_u)")  # fmt: skip
    g.add_argument("--evolve-mode", choices=EVOLVE_MODES, default="direct",
                   help="direct: Z = VOPE(A_s) every step; recurrent: Z <- VOPE(Z) per epoch")  # fmt: skip
    g.add_argument("--enhance", choices=ENHANCE_MODES, default="v2sm",
                   help="classifier features: v2sm (label-free), label (train only), oracle "
                   "(reads test labels: leaks them), none")  # fmt: skip
    g.add_argument("--allow-label-leak", action="store_true",
                   help="permit --enhance oracle, which builds test features from test labels")  # fmt: skip
    g.add_argument("--selection", choices=SELECTION_MODES, default="val",
                   help="val: epoch chosen on a validation split; test: on the test split "
                   "(the baselines' protocol, optimistic); last")  # fmt: skip
    g.add_argument("--gzsl", action=argparse.BooleanOptionalAction, default=True,
                   help="GZSL U/S/H (--no-gzsl: CZSL Acc over the unseen classes)")  # fmt: skip


def _train(args: argparse.Namespace) -> int:
    from dsp_zsl.config import PRESETS, DSPConfig, get_preset
    from dsp_zsl.train import fit_dsp

    explicit = set(getattr(args, "explicit_dests", ()))
    if not args.use_dsp and "enhance" not in explicit:
        args.enhance = "none"  # the plain base has no V2SM / VOPE to enhance features with
    cfg = config_from_args(DSPConfig, args)
    overrides = {}
    key = (cfg.base, cfg.dataset.upper())
    if args.preset and key in PRESETS:
        in_file = set(load_config_file(args.config)) if args.config else set()
        preset_cfg, run = get_preset(cfg.base, cfg.dataset)
        changes = {
            k: getattr(preset_cfg, k)
            for k in PRESETS[key]
            if k not in ("epochs", "seed") and k not in explicit and k not in in_file
        }
        cfg = cfg.replace(**changes)
        overrides = {k: v for k, v in run.items() if k not in explicit}
    if args.output_dir is None:
        args.output_dir = Path("runs") / "dsp-zsl" / f"{cfg.base}-{cfg.dataset}"
    trainer_cfg = trainer_config_from_args(args, **overrides)
    result = fit_dsp(cfg, trainer_cfg)
    final = {k: v for k, v in result.final.items() if isinstance(v, (int, float))}
    if args.json:
        print(json.dumps({"final": final, "run_dir": str(result.run_dir)}, indent=2))
    else:
        keys = ("U", "S", "H") if cfg.gzsl else ("Acc",)
        best = ", ".join(f"{k} {final.get('best_' + k, float('nan')):.1f}" for k in keys)
        print(f"{cfg.base}{'+DSP' if cfg.use_dsp else ''} on {cfg.dataset}: {best} "
              f"({SELECTION_NOTE[cfg.selection]})")  # fmt: skip
        print(f"run folder: {result.run_dir}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dsp_zsl.data.xlsa17 import load_xlsa17
    from dsp_zsl.train import evaluate_model, load_dsp_checkpoint

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "dsp_checkpoint.pt"
    model, base = load_dsp_checkpoint(path)
    cfg = model.cfg
    data = load_xlsa17(
        args.data_root or cfg.data_root,
        args.dataset or cfg.dataset,
        class_embedding=cfg.class_embedding,
        preprocessing=cfg.preprocessing,
        validation=cfg.validation,
    )
    chosen, _ = evaluate_model(model, base, data, seed=args.seed, selection=args.selection)
    if args.json:
        print(json.dumps({"metrics": chosen, "selection": args.selection or cfg.selection}))
    else:
        sel = args.selection or cfg.selection
        keys = ("U", "S", "H") if cfg.gzsl else ("Acc",)
        print(", ".join(f"{k} {chosen[k]:.1f}" for k in keys) + f" ({SELECTION_NOTE[sel]})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "DSP: evolving semantic prototypes for generative zero-shot learning (ICML 2023), "
        "around f-CLSWGAN, TF-VAEGAN and FREE.",
        [
            "dsp-zsl demo --quick",
            "dsp-zsl train --dataset CUB --data-root data --base tfvaegan --output-dir runs/cub",
        ],
    )
    train = add_command(
        sub,
        "train",
        help="train a base generator with (or without) DSP on an xlsa17 benchmark",
        examples=[
            "dsp-zsl train --dataset CUB --data-root data --base tfvaegan --output-dir runs/cub",
            "dsp-zsl train --dataset SUN --base clswgan --no-use-dsp "
            "--epochs 5 --output-dir runs/sun-base",
        ],
    )
    _add_model_flags(train)
    add_run_flags(train)
    add_trainer_flags(train, epochs=300)
    train.set_defaults(handler=_train)

    ev = add_command(
        sub,
        "eval",
        help="synthesize unseen features from a trained run and report U/S/H (or Acc)",
        examples=[
            "dsp-zsl eval --checkpoint runs/cub --data-root data",
            "dsp-zsl eval --checkpoint runs/cub/dsp_checkpoint.pt --selection last --json",
        ],
    )
    ev.add_argument("--checkpoint", required=True, help="run folder or dsp_checkpoint.pt")
    ev.add_argument("--data-root", default=None, help="xlsa17 root (default: the run's)")
    ev.add_argument("--dataset", default=None, help="dataset folder (default: the run's)")
    ev.add_argument("--selection", choices=SELECTION_MODES, default=None,
                    help="classifier-epoch selection (default: the run's)")  # fmt: skip
    ev.add_argument("--seed", type=int, default=0, help="seed of synthesis and classifier")
    ev.set_defaults(handler=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
