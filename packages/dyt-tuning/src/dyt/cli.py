"""``dyt-tuning`` (alias ``dyt``): info | demo | train | eval | report.

Only this module parses arguments or prints. Heavy modules (torch, timm) are imported inside the
handlers, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dyt.plugin import METHOD
from papers_shared.cli_utils import (
    add_command,
    add_run_flags,
    add_trainer_flags,
    build_package_parser,
    parse_and_run,
    trainer_config_from_args,
)

__all__ = ["build_parser", "main"]

logger = logging.getLogger("dyt.cli")

PRESETS = ("vtab", "vtab_official_script", "full_image", "video_k400", "video_ssv2")
# flag dest -> TrainConfig field (None on the command line = keep the preset's value)
_TRAIN_FIELDS = (
    "data_root", "task", "model", "backbone_checkpoint", "img_size", "warmup_epochs",
    "batch_size", "lr", "weight_decay", "num_workers", "num_frames", "train_split", "eval_split",
    "video_protocol",
)  # fmt: skip
_DYT_FIELDS = ("bottleneck", "rate", "num_experts", "dispatch")


def _given(args: argparse.Namespace, dest: str) -> bool:
    return dest in getattr(args, "explicit_dests", ())


def _train_config(args: argparse.Namespace):
    from dataclasses import replace

    from dyt.config import TrainConfig, get_train_preset

    cfg = TrainConfig.load(args.config) if args.config else get_train_preset(args.preset)
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _TRAIN_FIELDS if getattr(args, name) is not None
    }
    if _given(args, "epochs"):
        overrides["epochs"] = args.epochs
    if args.pretrained:
        overrides["pretrained"] = True
    if args.no_complete:
        overrides["use_complete"] = False
    if args.model_overrides:
        overrides["model_overrides"] = json.loads(args.model_overrides)
    dyt_overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _DYT_FIELDS if getattr(args, name) is not None
    }
    if args.adapter_scale is not None:
        scale = args.adapter_scale
        dyt_overrides["adapter_scale"] = scale if scale == "learnable" else float(scale)
    cfg = replace(cfg, **overrides)
    if dyt_overrides:
        cfg = replace(cfg, dyt=replace(cfg.dyt, **dyt_overrides))
    return cfg


def _train(args: argparse.Namespace) -> int:
    from dyt.train import train

    cfg = _train_config(args)
    trainer_config = trainer_config_from_args(args, epochs=cfg.epochs)
    result = train(cfg, trainer_config)
    if result.nothing_to_do:
        logger.warning("nothing to do: %s has finished all %d epoch(s)", result.run_dir, cfg.epochs)
    print(json.dumps({"run_dir": str(result.run_dir), **result.final}, indent=2, default=str))
    return 0


def _strip_prefix(state: dict, prefix: str) -> dict:
    return {k.removeprefix(prefix): v for k, v in state.items()}


def _eval(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import torch
    from torch.utils.data import DataLoader

    from dyt.config import TrainConfig
    from dyt.convert import load_official_checkpoint
    from dyt.train import build_datasets, build_model, evaluate
    from papers_shared.checkpoint import load_state_dict_checked, read_state_dict
    from papers_shared.seeding import seed_everything

    run_dir = Path(args.run_dir)
    config_path = Path(args.config) if args.config else run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found (eval reads a run folder of `train`)")
    cfg = TrainConfig.load(config_path)
    cfg = replace(cfg, eval_split=args.split, num_workers=args.num_workers)
    if args.data_root:
        cfg = replace(cfg, data_root=args.data_root)
    _, dataset, _ = build_datasets(cfg)
    seed_everything(args.seed)
    if args.checkpoint:
        weights = read_state_dict(args.checkpoint, trust_checkpoint=args.trust_checkpoint)
    else:
        weights_path = run_dir / "model.safetensors"
        if not weights_path.exists():
            raise FileNotFoundError(f"{weights_path} not found (written by `train` at the end)")
        weights = _strip_prefix(read_state_dict(weights_path), "model.")
    head = next((k for k in ("head.weight", "head.fc.weight") if k in weights), None)  # ViT, Swin
    if head is None:
        raise ValueError(f"{args.checkpoint or run_dir} holds no classifier head")
    num_classes = int(weights[head].shape[0])  # the trained head fixes the classes
    model = build_model(replace(cfg, pretrained=False, backbone_checkpoint=""), num_classes)
    if args.checkpoint:
        load_official_checkpoint(model, weights)
    else:
        load_state_dict_checked(model, weights, source=str(run_dir / "model.safetensors"))
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)  # fmt: skip
    model.to(device)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=cfg.num_workers)
    result = evaluate(model, loader, device, sparse=not args.dense, progress=args.progress)
    record = dict(result.__dict__)
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "eval.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from dyt.data.vtab import VTAB_TASKS, vtab_group_means

    accuracies: dict[str, float] = {}
    for run in args.run_dirs:
        run = Path(run)
        config_path, history_path = run / "config.json", run / "history.jsonl"
        for path in (config_path, history_path):
            if not path.exists():
                raise FileNotFoundError(f"{path} not found (report reads run folders of `train`)")
        task = json.loads(config_path.read_text())["task"]["task"]
        records = [json.loads(line) for line in history_path.read_text().splitlines() if line]
        evals = [r["eval_accuracy"] for r in records if "eval_accuracy" in r]
        if not evals:
            raise ValueError(f"{run} has no evaluation records yet")
        accuracies[task] = 100 * (max(evals) if args.best else evals[-1])
    means = vtab_group_means(accuracies)
    missing = [t for t in VTAB_TASKS if t not in accuracies]
    summary: dict[str, Any] = {"tasks": accuracies, **means}
    if missing:
        summary["partial"] = True
        summary["missing_tasks"] = missing
        logger.warning(
            "partial: %d of %d VTAB-1K tasks; the group means cover only the tasks given "
            "(missing: %s)",
            len(accuracies),
            len(VTAB_TASKS),
            ", ".join(missing),
        )
    print(json.dumps(summary, indent=2))
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = add_command(
        sub, "train", help="train DyT on a VTAB-1K task folder (also under torchrun)",
        examples=[
            "dyt-tuning train --data-root vtab-1k --task dtd --pretrained --output-dir runs/dtd",
            "torchrun --nproc_per_node=2 -m dyt.cli train --preset vtab --data-root vtab-1k "
            "--task cifar --backbone-checkpoint vit_b16_in21k.pth --output-dir runs/cifar",
        ],
    )  # fmt: skip
    keep = "(None: the preset's value)"
    group = train.add_argument_group("DyT")
    group.add_argument("--preset", default="vtab", choices=PRESETS,
                       help="the paper's recipe to start from (overridden by --config)")  # fmt: skip
    group.add_argument("--data-root", help=f"VTAB-1K root or task folder {keep}")
    group.add_argument("--task", help=f"VTAB-1K task folder name {keep}")
    group.add_argument("--model", help=f"timm backbone name (ViT or Swin) {keep}")
    group.add_argument("--pretrained", action="store_true",
                       help="load timm's pre-trained weights for --model (downloads)")  # fmt: skip
    group.add_argument("--backbone-checkpoint", help="pre-trained backbone weights file")
    group.add_argument(
        "--model-overrides", help="JSON for timm.create_model, e.g. '{\"depth\": 2}'"
    )
    group.add_argument("--img-size", type=int, help=f"input resolution {keep}")
    group.add_argument("--num-frames", type=int, help=f"> 0: video model on clip lists {keep}")
    group.add_argument("--video-protocol", choices=["k400", "ssv2"], help=f"clip sampling {keep}")
    group.add_argument("--train-split", help=f"split / list file name for training {keep}")
    group.add_argument("--eval-split", help=f"split / list file name for evaluation {keep}")
    group.add_argument("--bottleneck", type=int, help=f"adapter bottleneck d {keep}")
    group.add_argument("--rate", type=float, help=f"target activation rate r {keep}")
    group.add_argument("--adapter-scale", help=f"adapter scale s: a number or 'learnable' {keep}")
    group.add_argument("--num-experts", type=int, help=f"> 1: MoE adapter {keep}")
    group.add_argument("--dispatch", choices=["mlp", "attn", "attn_mlp", "layer"],
                       help=f"where tokens are dispatched {keep}")  # fmt: skip
    group.add_argument("--no-complete", action="store_true",
                       help="train without the complete-model CE and KL (paper ablation)")  # fmt: skip
    group.add_argument("--warmup-epochs", type=int, help=f"linear warm-up epochs {keep}")
    group.add_argument("--batch-size", type=int, help=f"global batch size {keep}")
    group.add_argument("--lr", type=float, help=f"peak learning rate {keep}")
    group.add_argument("--weight-decay", type=float, help=f"AdamW weight decay {keep}")
    group.add_argument("--num-workers", type=int, help=f"DataLoader workers {keep}")
    add_run_flags(train)
    add_trainer_flags(train, epochs=100)
    train.set_defaults(handler=_train)


def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "DyT: dynamic tuning of timm ViTs (token dispatcher + adapters).",
        ["dyt-tuning info", "dyt-tuning demo --quick"],
    )
    _add_train(sub)

    evaluate = add_command(
        sub, "eval", help="evaluate a trained run (accuracy, eval activation, GFLOPs)",
        examples=[
            "dyt-tuning eval runs/dtd --data-root vtab-1k",
            "dyt-tuning eval runs/dtd --checkpoint official_dyt.pth --dense",
        ],
    )  # fmt: skip
    evaluate.add_argument("run_dir", help="folder written by `train` (config.json, weights)")
    evaluate.add_argument("--checkpoint", help="an official DyT file ({'model': ...}) instead")
    evaluate.add_argument(
        "--trust-checkpoint", action="store_true",
        help="unpickle the whole file, running code stored in it; only for files from a source "
        "you trust",
    )  # fmt: skip
    evaluate.add_argument("--data-root", help="dataset root (default: the run's)")
    evaluate.add_argument("--split", default="test", help="split / list file name to evaluate")
    evaluate.add_argument("--batch-size", type=int, default=64, help="images per batch")
    evaluate.add_argument("--num-workers", type=int, default=2, help="DataLoader workers")
    evaluate.add_argument(
        "--dense", action="store_true",
        help="dense masked path: every token computed, masks applied (reports its GFLOPs)",
    )  # fmt: skip
    evaluate.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                          help="progress bar on stderr (unset: only on a terminal)")  # fmt: skip
    add_run_flags(evaluate)
    evaluate.set_defaults(handler=_eval)

    report = add_command(
        sub, "report", help="VTAB-1K group means (natural / specialized / structured) over runs",
        examples=["dyt-tuning report runs/vtab/*", "dyt-tuning report runs/a runs/b --best"],
    )  # fmt: skip
    report.add_argument("run_dirs", nargs="+", help="run folders written by `train`")
    report.add_argument(
        "--best", action="store_true",
        help="best evaluated epoch instead of the last (the released code's protocol)",
    )  # fmt: skip
    report.set_defaults(handler=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
