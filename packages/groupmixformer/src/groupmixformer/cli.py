"""``groupmixformer info | demo | train | eval``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from groupmixformer.plugin import METHOD
from papers_shared.cli_utils import build_package_parser, parse_and_run

__all__ = ["build_parser", "main"]


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _train(args: argparse.Namespace) -> int:
    from groupmixformer.train import TrainConfig, train

    config = TrainConfig(
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        model=args.model,
        model_kwargs=json.loads(args.model_kwargs),
        drop_path_rate=args.drop_path_rate,
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        batch_size=args.batch_size,
        base_lr=args.lr,
        img_size=args.img_size,
        workers=args.workers,
        seed=args.seed,
        max_steps_per_epoch=args.max_steps_per_epoch,
        resume=args.resume,
        device=args.device,
        mixup=0.0 if args.no_mixup else 0.8,
        cutmix=0.0 if args.no_mixup else 1.0,
    )
    result = train(config)
    if result["history"]:
        last = result["history"][-1]
        print(
            json.dumps(last)
            if args.json
            else f"epoch {last['epoch']}: val top-1 {last['val_top1']:.2f}  "
            f"top-5 {last['val_top5']:.2f}  train loss {last['train_loss']:.4f}"
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from groupmixformer.train import evaluate_checkpoint

    scores = evaluate_checkpoint(
        args.checkpoint,
        args.val_dir,
        model=args.model,
        model_kwargs=json.loads(args.model_kwargs),
        img_size=args.img_size,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
    )
    if args.json:
        print(json.dumps(scores))
    else:
        print(
            f"top-1 {scores['top1']:.3f}  top-5 {scores['top5']:.3f}  "
            f"loss {scores['loss']:.4f}  ({scores['count']} images)"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "GroupMixFormer (Group-Mix Attention): model info, demo, training, evaluation.",
        ["groupmixformer info", "groupmixformer demo --quick"],
    )

    train = sub.add_parser(
        "train",
        help="train on an ImageFolder (<data-dir>/train, <data-dir>/val) with the release's recipe",
        epilog=_examples(
            "groupmixformer train --data-dir /data/imagenet --model small",
            "torchrun --nproc_per_node=8 -m groupmixformer train --data-dir /data/imagenet "
            "--model base",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--data-dir", type=Path, required=True)
    train.add_argument("--output-dir", type=Path, default=Path("runs/groupmixformer/train"))
    train.add_argument("--model", default="small", help="miny | tiny | small | base | large")
    train.add_argument("--model-kwargs", default="{}", help="JSON config overrides")
    train.add_argument("--drop-path-rate", type=float, default=None)
    train.add_argument("--epochs", type=int, default=300)
    train.add_argument("--warmup-epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=64, help="per process")
    train.add_argument("--lr", type=float, default=5e-4, help="base lr per 512 images")
    train.add_argument("--img-size", type=int, default=224)
    train.add_argument("--workers", type=int, default=4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-steps-per-epoch", type=int, default=None)
    train.add_argument("--no-mixup", action="store_true", help="plain label-smoothed CE")
    train.add_argument("--resume", type=Path, default=None)
    train.add_argument("--device", default=None)
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=_train)

    evaluate = sub.add_parser(
        "eval",
        help="top-1/top-5 of a checkpoint on an ImageFolder val set (eval transform)",
        epilog=_examples(
            "groupmixformer eval --checkpoint groupmixformer_small.pth --val-dir /data/imagenet/val",
            "groupmixformer eval --checkpoint runs/groupmixformer/train/checkpoint.pth "
            "--val-dir val --model miny --json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--val-dir", type=Path, required=True)
    evaluate.add_argument("--model", default="small")
    evaluate.add_argument("--model-kwargs", default="{}", help="JSON config overrides")
    evaluate.add_argument("--img-size", type=int, default=224)
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--workers", type=int, default=4)
    evaluate.add_argument("--device", default=None)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
