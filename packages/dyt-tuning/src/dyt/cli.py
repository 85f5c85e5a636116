"""``dyt-tuning`` (alias ``dyt``): info | demo | train | eval | report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from dyt.plugin import METHOD
from papers_shared.cli_utils import build_package_parser, parse_and_run

__all__ = ["build_parser", "main"]

_FORMAT = argparse.RawDescriptionHelpFormatter


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _train_config(args: argparse.Namespace):
    from dataclasses import replace

    from dyt.config import TrainConfig, get_train_preset

    cfg = TrainConfig.load(args.config) if args.config else get_train_preset(args.preset)
    overrides = {
        "data_root": args.data_root, "task": args.task, "model": args.model,
        "backbone_checkpoint": args.backbone_checkpoint, "img_size": args.img_size,
        "epochs": args.epochs, "warmup_epochs": args.warmup_epochs, "batch_size": args.batch_size,
        "lr": args.lr, "weight_decay": args.weight_decay, "output_dir": args.output_dir,
        "seed": args.seed, "device": args.device, "max_steps": args.max_steps,
        "num_workers": args.num_workers, "eval_every": args.eval_every,
        "num_frames": args.num_frames, "train_split": args.train_split,
        "eval_split": args.eval_split, "video_protocol": args.video_protocol,
    }  # fmt: skip
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.no_complete:
        overrides["use_complete"] = False
    if args.model_overrides:
        overrides["model_overrides"] = json.loads(args.model_overrides)
    dyt_overrides = {
        "bottleneck": args.bottleneck, "rate": args.rate, "num_experts": args.num_experts,
        "dispatch": args.dispatch,
        "adapter_scale": (args.adapter_scale if args.adapter_scale in (None, "learnable")
                          else float(args.adapter_scale)),
    }  # fmt: skip
    dyt_overrides = {k: v for k, v in dyt_overrides.items() if v is not None}
    cfg = replace(cfg, **overrides)
    if dyt_overrides:
        cfg = replace(cfg, dyt=replace(cfg.dyt, **dyt_overrides))
    return cfg


def _train(args: argparse.Namespace) -> int:
    from dyt.train import train

    result = train(_train_config(args), progress=args.progress)
    print(json.dumps(result, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from torch.utils.data import DataLoader

    from dyt.config import TrainConfig
    from dyt.convert import ADAPTER_FILE, load_adapter, load_official_checkpoint
    from dyt.data.vtab import VTABFolder, image_transform
    from dyt.train import build_model, evaluate
    from papers_shared.checkpoint import read_state_dict
    from papers_shared.seeding import seed_everything

    run_dir = Path(args.run_dir)
    config_path = run_dir / "train_config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found (eval reads a run folder of `train`)")
    cfg = TrainConfig.load(config_path)
    if args.data_root:
        cfg = replace(cfg, data_root=args.data_root)
    weights = read_state_dict(args.checkpoint or run_dir / ADAPTER_FILE)
    head = next((k for k in ("head.weight", "head.fc.weight") if k in weights), None)  # ViT, Swin
    if head is None:
        raise ValueError(f"{args.checkpoint or run_dir / ADAPTER_FILE} holds no classifier head")
    num_classes = int(weights[head].shape[0])  # the trained head fixes the classes
    folder = Path(cfg.data_root)
    if cfg.num_frames > 0:
        from dyt.data.video import VideoClipDataset

        dataset = VideoClipDataset(folder / f"{args.split}.txt", folder, False, cfg.num_frames,
                                   img_size=cfg.img_size, protocol=cfg.video_protocol)  # fmt: skip
    else:
        folder = folder if (folder / f"{args.split}.txt").exists() else folder / cfg.task
        dataset = VTABFolder(folder, args.split, image_transform(cfg.img_size, cfg.augment, False))
    seed_everything(cfg.seed)  # a run without a backbone checkpoint rebuilds its random backbone
    model = build_model(cfg, num_classes)
    if args.checkpoint:
        load_official_checkpoint(model, weights)
    else:
        load_adapter(model, run_dir)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=cfg.num_workers)
    result = evaluate(model, loader, next(model.parameters()).device, sparse=not args.dense,
                      progress=args.progress)  # fmt: skip
    print(json.dumps(result.__dict__, indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from dyt.data.vtab import vtab_group_means

    accuracies: dict[str, float] = {}
    for run in args.run_dirs:
        run = Path(run)
        cfg = json.loads((run / "train_config.json").read_text())
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in records if "eval_accuracy" in r]
        if not evals:
            raise ValueError(f"{run} has no evaluation records yet")
        key = "best_eval_accuracy" if args.best else "eval_accuracy"
        accuracies[cfg["task"]] = 100 * evals[-1][key]
    means = vtab_group_means(accuracies)
    print(json.dumps({"tasks": accuracies, **means}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "DyT: dynamic tuning of timm ViTs (token dispatcher + adapters).",
        ["dyt-tuning info", "dyt-tuning demo --quick"],
    )

    train = sub.add_parser(
        "train", help="train DyT on a VTAB-1K task folder (works under torchrun)",
        formatter_class=_FORMAT,
        epilog=_examples(
            "dyt-tuning train --data-root vtab-1k --task cifar --backbone-checkpoint vit.pth",
            "torchrun --nproc_per_node=8 -m dyt.cli train --preset vtab --data-root vtab-1k "
            "--task dtd --output-dir runs/dtd",
        ),
    )  # fmt: skip
    train.add_argument("--preset", default="vtab", help="vtab | vtab_official_script | "
                       "full_image | video_k400 | video_ssv2 (default vtab)")  # fmt: skip
    train.add_argument("--config", help="a train_config.json to start from instead of a preset")
    train.add_argument("--data-root")
    train.add_argument("--task")
    train.add_argument("--model", help="timm backbone name (default vit_base_patch16_224)")
    train.add_argument(
        "--model-overrides", help="JSON for timm.create_model, e.g. '{\"depth\": 2}'"
    )
    train.add_argument("--backbone-checkpoint", help="pre-trained ViT weights (.pth/.safetensors)")
    train.add_argument("--img-size", type=int)
    train.add_argument("--num-frames", type=int, help="> 0: video model on clip lists (decord)")
    train.add_argument(
        "--video-protocol",
        choices=["k400", "ssv2"],
        help="clip sampling: k400 (decord) or ssv2 (PyAV, RandAugment)",
    )
    train.add_argument("--train-split", help="split / list file name (default train800val200)")
    train.add_argument("--eval-split", help="default test")
    train.add_argument("--bottleneck", type=int)
    train.add_argument("--rate", type=float)
    train.add_argument("--adapter-scale", help="a number or 'learnable'")
    train.add_argument("--num-experts", type=int, help="> 1: MoE adapter")
    train.add_argument("--dispatch", choices=["mlp", "attn", "attn_mlp", "layer"])
    train.add_argument("--no-complete", action="store_true", help="no complete-model CE / KL")
    train.add_argument("--epochs", type=int)
    train.add_argument("--warmup-epochs", type=int)
    train.add_argument("--batch-size", type=int, help="global batch size")
    train.add_argument("--lr", type=float)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--eval-every", type=int)
    train.add_argument("--max-steps", type=int)
    train.add_argument("--num-workers", type=int)
    train.add_argument("--output-dir")
    train.add_argument("--seed", type=int)
    train.add_argument("--device")
    train.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    train.set_defaults(handler=_train)

    evaluate = sub.add_parser(
        "eval", help="evaluate a trained run (accuracy, eval activation, GFLOPs)",
        formatter_class=_FORMAT,
        epilog=_examples(
            "dyt-tuning eval runs/dtd --data-root vtab-1k",
            "dyt-tuning eval runs/dtd --checkpoint official_dyt.pth --dense",
        ),
    )  # fmt: skip
    evaluate.add_argument("run_dir", help="folder written by `train` (train_config.json)")
    evaluate.add_argument("--checkpoint", help="an official {'model': sd} file instead")
    evaluate.add_argument("--data-root")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--dense", action="store_true", help="dense masked path, no skipping")
    evaluate.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    evaluate.set_defaults(handler=_eval)

    report = sub.add_parser(
        "report", help="VTAB-1K group means (natural / specialized / structured) over runs",
        formatter_class=_FORMAT,
        epilog=_examples("dyt-tuning report runs/vtab/*", "dyt-tuning report runs/a runs/b --best"),
    )  # fmt: skip
    report.add_argument("run_dirs", nargs="+")
    report.add_argument("--best", action="store_true", help="best epoch (the paper's protocol)")
    report.set_defaults(handler=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
