"""``groupmixformer info | demo | train | eval``: the only module that parses arguments or prints.

Heavy modules (torch, timm) are imported inside the handlers, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from groupmixformer.config import RELEASE_EPOCHS, TrainConfig
from groupmixformer.plugin import METHOD
from papers_shared.cli_utils import (
    add_command,
    add_run_flags,
    add_trainer_flags,
    build_package_parser,
    config_from_args,
    parse_and_run,
    trainer_config_from_args,
)

__all__ = ["build_parser", "main"]

TRUST_HELP = (
    "unpickle the whole file, running code stored in it; only for files from a source you trust"
)

# argparse dest -> TrainConfig field (flags that differ from the field name)
_TRAIN_FLAGS = {
    "data_dir": "data_dir",
    "model": "model",
    "model_overrides": "model_overrides",
    "drop_path_rate": "drop_path_rate",
    "batch_size": "batch_size",
    "lr": "base_lr",
    "warmup_epochs": "warmup_epochs",
    "img_size": "img_size",
    "workers": "workers",
    "mixup": "mixup",
    "cutmix": "cutmix",
}


def _json_object(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _train(args: argparse.Namespace) -> int:
    from groupmixformer.train import GroupMixFormerTask
    from papers_shared.trainer import Trainer

    config = config_from_args(TrainConfig, args, flags=_TRAIN_FLAGS)
    trainer_config = trainer_config_from_args(args)
    config.resolved_warmup_epochs(trainer_config.epochs)  # refuse a bad pair before any work
    result = Trainer(GroupMixFormerTask(config), trainer_config).fit()
    if result.nothing_to_do:
        print(f"nothing to do: every epoch of {result.run_dir} is already trained")
        return 0
    last = result.history[-1]
    if args.json:
        print(json.dumps({"run_dir": str(result.run_dir), **last}, default=str))
    else:
        print(
            f"epoch {last['epoch']}: val top-1 {last['val_top1']:.2f}  "
            f"top-5 {last['val_top5']:.2f}  train loss {last['train_loss']:.4f}  "
            f"({result.run_dir})"
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from groupmixformer.evaluate import evaluate_checkpoint

    scores = evaluate_checkpoint(
        args.checkpoint,
        args.val_dir,
        model=args.model,
        model_overrides=args.model_overrides,
        img_size=args.img_size,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        progress=args.progress,
        trust_checkpoint=args.trust_checkpoint,
    )
    if args.json:
        print(json.dumps(scores))
    else:
        print(
            f"top-1 {scores['top1']:.3f}  top-5 {scores['top5']:.3f}  "
            f"loss {scores['loss']:.4f}  ({scores['count']} images)"
        )
    return 0


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="small", help="released variant: miny | tiny | small | base | large"
    )
    parser.add_argument(
        "--model-overrides",
        type=_json_object,
        default={},
        help="JSON object of architecture fields to change, e.g. '{\"depths\": [1, 1, 1, 1]}'",
    )


def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "GroupMixFormer (Group-Mix Attention): model info, demo, training, evaluation.",
        ["groupmixformer info", "groupmixformer demo --quick"],
    )

    train = add_command(
        sub,
        "train",
        help="train on ImageFolders <data-dir>/train and <data-dir>/val with the release's recipe",
        examples=[
            "groupmixformer train --data-dir /data/imagenet --model small --output-dir runs/s",
            "torchrun --nproc_per_node=8 -m groupmixformer train --data-dir /data/imagenet "
            "--model base --output-dir runs/b --resume",
        ],
    )
    train.add_argument("--data-dir", type=Path, default=None, help="holds train/ and val/")
    _add_model_flags(train)
    train.add_argument(
        "--drop-path-rate", type=float, default=None, help="stochastic depth (unset: the variant's)"
    )
    train.add_argument("--batch-size", type=int, default=64, help="images per process and step")
    train.add_argument("--lr", type=float, default=5e-4, help="base learning rate per 512 images")
    train.add_argument(
        "--warmup-epochs",
        type=int,
        default=None,
        help="linear warmup; unset: the release's 20 of 300 epochs scaled to --epochs",
    )
    train.add_argument("--img-size", type=int, default=224, help="training crop size")
    train.add_argument("--workers", type=int, default=4, help="DataLoader worker processes")
    train.add_argument("--mixup", type=float, default=0.8, help="Mixup alpha (0: off)")
    train.add_argument("--cutmix", type=float, default=1.0, help="CutMix alpha (0: off)")
    add_run_flags(train, output_dir_default="runs/groupmixformer/train")
    add_trainer_flags(train, epochs=RELEASE_EPOCHS, clip_grad_norm=5.0)
    train.set_defaults(handler=_train)

    evaluate = add_command(
        sub,
        "eval",
        help="top-1/top-5 of a released checkpoint or a training run on an ImageFolder",
        examples=[
            "groupmixformer eval --checkpoint groupmixformer_small.pth --val-dir /data/imagenet/val",
            "groupmixformer eval --checkpoint runs/groupmixformer/train --val-dir val --json",
        ],
    )
    evaluate.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="a released .pth file, or a run folder written by `groupmixformer train`",
    )
    evaluate.add_argument(
        "--val-dir", type=Path, required=True, help="ImageFolder: <val-dir>/<class>/<images>"
    )
    _add_model_flags(evaluate)
    evaluate.add_argument("--img-size", type=int, default=224, help="center-crop size")
    evaluate.add_argument("--batch-size", type=int, default=64, help="images per batch")
    evaluate.add_argument("--workers", type=int, default=4, help="DataLoader worker processes")
    evaluate.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    evaluate.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    evaluate.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (unset: only when stderr is a terminal)",
    )
    evaluate.set_defaults(handler=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
