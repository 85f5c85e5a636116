"""``etris`` command line: info, demo, train, eval, predict, convert, convert-lmdb."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from etris.plugin import METHOD
from papers_shared.cli_utils import (
    add_command,
    add_run_flags,
    add_trainer_flags,
    build_package_parser,
    parse_and_run,
    trainer_config_from_args,
)

__all__ = ["build_parser", "main"]

VARIANTS = ("etris_rn50", "etris_rn101", "etris_vit_b16", "etris_test_rn", "etris_test_vit")


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--variant", choices=VARIANTS, default="etris_rn50", help="ETRIS variant")
    group.add_argument(
        "--pretrained",
        default=None,
        help="CLIP weights: an open_clip tag (openai) or a local file (RN50.pt, a state dict)",
    )
    group.add_argument(
        "--word-len", type=int, default=None, help="sentence length (17; 22 for G-Ref)"
    )
    group.add_argument(
        "--backbone-bn",
        choices=("train", "eval"),
        default=None,
        help="frozen backbone BatchNorm in training: batch statistics (train, the paper's code) or running",
    )


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        default="refcoco",
        help="refcoco | refcoco+ | refcocog_u | refcocog_g | shapes (generated, no download)",
    )
    group.add_argument(
        "--data-root", default="", help="folder with anns/, masks/, images/ (or lmdb/)"
    )
    group.add_argument(
        "--data-format", choices=("json", "lmdb"), default="json", help="data layout"
    )
    group.add_argument("--image-dir", default="images", help="images folder under --data-root")
    group.add_argument("--batch-size", type=int, default=32, help="total batch size")
    group.add_argument("--num-workers", type=int, default=4, help="data loader workers")


_MODEL_FLAGS = ("pretrained", "word_len", "backbone_bn")
_DATA_FLAGS = (
    "dataset",
    "data_root",
    "data_format",
    "image_dir",
    "batch_size",
    "num_workers",
    "lr",
)


def _model_config(args: argparse.Namespace, base: dict[str, Any] | None = None) -> Any:
    """The variant's config (or ``base`` from a config file), with typed model flags applied."""
    from etris.config import ETRISConfig
    from etris.models.etris import ETRIS_VARIANTS

    data = ETRISConfig().to_dict()
    data.update(base if base is not None else ETRIS_VARIANTS[args.variant])
    for name in _MODEL_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            data[name] = value
    return ETRISConfig.from_dict(data)


def _train_config(args: argparse.Namespace) -> Any:
    """Flag defaults < ``--config`` file (a config or a run's config.json) < typed flags."""
    from etris.config import TrainConfig
    from papers_shared.cli_utils import load_config_file

    explicit = getattr(args, "explicit_dests", frozenset())
    data: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        loaded = load_config_file(args.config)
        if "task" in loaded and isinstance(loaded["task"], dict):  # a run's config.json
            loaded = loaded["task"].get("train", loaded["task"])
        data.update(loaded)
    for name in _DATA_FLAGS:
        if hasattr(args, name) and (name in explicit or name not in data):
            data[name] = getattr(args, name)
    base = None if "variant" in explicit else data.get("model")
    data["model"] = _model_config(args, base).to_dict()
    return TrainConfig.from_dict(data)


def _cmd_train(args: argparse.Namespace) -> int:
    from etris.train import ETRISTask
    from papers_shared.trainer import Trainer

    cfg = _train_config(args)
    result = Trainer(ETRISTask(cfg, seed=args.seed), trainer_config_from_args(args)).fit()
    out = {"run_dir": str(result.run_dir), "final": result.final}
    print(
        json.dumps(out, indent=2, default=str)
        if args.json
        else f"run: {result.run_dir}\n{result.final}"
    )
    return 0


def _load_model(args: argparse.Namespace) -> Any:
    from etris.convert import load_etris_weights
    from etris.models.etris import ETRIS

    model = ETRIS(_model_config(args))
    if args.checkpoint is not None:
        load_etris_weights(model, args.checkpoint)
    return model.eval()


def _cmd_eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from etris.data.refer import collate_eval
    from etris.evaluate import evaluate_model
    from etris.train import build_dataset

    cfg = _train_config(args)
    model = _load_model(args)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    model.to(device)
    data = build_dataset(cfg, args.split, "eval", args.seed)
    loader = DataLoader(
        data,
        batch_size=args.batch_size,
        collate_fn=None if cfg.dataset == "shapes" else collate_eval,
    )
    metrics = evaluate_model(model, loader, device, progress=args.progress)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print("\n".join(f"{k}: {v:.4f}" for k, v in metrics.items()))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from etris.data.refer import prepare_sample
    from etris.data.transforms import image_to_tensor, unwarp_letterbox
    from etris.evaluate import predict_probs

    model = _load_model(args)
    if not Path(args.image).exists():
        raise FileNotFoundError(f"image not found: {args.image}")
    pil = Image.open(args.image).convert("RGB")
    image = image_to_tensor(pil)
    sample = prepare_sample(image, None, args.text, model.config.image_size, model.config.word_len)
    with torch.no_grad():
        probs = predict_probs(model, sample["image"][None], sample["ids"][None])[0]
    mask = unwarp_letterbox(probs, sample["box"])[0].numpy() > args.threshold
    overlay = np.asarray(pil).astype(np.float32)
    overlay[mask] = 0.5 * overlay[mask] + 0.5 * np.array([255.0, 0.0, 0.0])
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay.astype(np.uint8)).save(out)
    mask_path = out.with_name(out.stem + "_mask.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
    result = {"overlay": str(out), "mask": str(mask_path), "mask_fraction": float(mask.mean())}
    print(json.dumps(result) if args.json else f"overlay: {out}\nmask: {mask_path}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from etris.convert import load_official_checkpoint
    from etris.models.etris import ETRIS
    from papers_shared.checkpoint import save_safetensors

    model = ETRIS(_model_config(args))
    meta = load_official_checkpoint(model, args.checkpoint)
    out = Path(args.output)
    save_safetensors(model.state_dict(), out)
    (out.with_suffix(".json")).write_text(json.dumps(model.config.to_dict(), indent=2))
    print(
        json.dumps(
            {"output": str(out), **{k: v for k, v in meta.items() if k != "prec"}}, default=str
        )
    )
    return 0


def _cmd_convert_lmdb(args: argparse.Namespace) -> int:
    from etris.data.refer import convert_lmdb

    count = convert_lmdb(args.source, args.destination)
    print(
        json.dumps({"entries": count, "output": str(args.destination)})
        if args.json
        else f"wrote {count} entries to {args.destination}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "ETRIS: Bridger adapters between frozen CLIP towers for referring image segmentation.",
        ["etris info", "etris demo --quick"],
    )
    train = add_command(
        sub,
        "train",
        help="train Bridger + decoder on RefCOCO-family data (or the generated shapes)",
        examples=[
            "etris train --dataset shapes --variant etris_test_vit --epochs 1 --max-steps 5 "
            "--word-len 16 --output-dir runs/etris-shapes",
            "etris train --variant etris_rn101 --pretrained RN101.pt --data-root data "
            "--dataset refcoco --output-dir runs/etris-rn101",
        ],
    )
    _add_model_flags(train)
    _add_data_flags(train)
    train.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    add_run_flags(train)
    add_trainer_flags(train, epochs=50, log_every=50)
    train.set_defaults(handler=_cmd_train)

    evaluate = add_command(
        sub,
        "eval",
        help="mIoU / oIoU / Pr@X of a checkpoint on a split (every sentence of every ref)",
        examples=[
            "etris eval --dataset shapes --variant etris_test_vit --word-len 16 --checkpoint "
            "runs/etris-shapes",
            "etris eval --variant etris_rn101 --checkpoint etris_rn101_refcoco.pth "
            "--data-root data --dataset refcoco --split testA",
        ],
    )
    _add_model_flags(evaluate)
    _add_data_flags(evaluate)
    evaluate.add_argument(
        "--checkpoint", default=None, help="run folder, safetensors or official .pth"
    )
    evaluate.add_argument("--split", default="val", help="split to evaluate")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the generated shapes split")
    evaluate.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    evaluate.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar"
    )
    evaluate.add_argument("--config", type=Path, default=None, help="JSON/YAML training config")
    evaluate.set_defaults(handler=_cmd_eval)

    predict = add_command(
        sub,
        "predict",
        help="segment what a sentence refers to in one image; writes an overlay and a mask PNG",
        examples=[
            "etris predict --variant etris_test_vit --word-len 16 --checkpoint runs/etris-shapes "
            "--image shapes.png --text 'the red circle' --output out/red.png",
            "etris predict --variant etris_rn101 --checkpoint etris_rn101_refcoco.pth "
            "--image dog.jpg --text 'the dog on the left' --output out/dog.png",
        ],
    )
    _add_model_flags(predict)
    predict.add_argument(
        "--checkpoint", default=None, help="run folder, safetensors or official .pth"
    )
    predict.add_argument("--image", required=True, help="input image")
    predict.add_argument("--text", required=True, help="referring sentence")
    predict.add_argument("--output", default="prediction.png", help="overlay PNG (mask beside it)")
    predict.add_argument(
        "--threshold", type=float, default=0.35, help="mask threshold (paper: 0.35)"
    )
    predict.set_defaults(handler=_cmd_predict)

    convert = add_command(
        sub,
        "convert",
        help="official ETRIS .pth -> safetensors of this package (keys checked strictly)",
        examples=[
            "etris convert --variant etris_rn101 --checkpoint etris_rn101_refcoco.pth "
            "--output etris_rn101.safetensors",
            "etris convert --variant etris_vit_b16 --checkpoint vit_refcoco.pth --output vit.safetensors",
        ],
    )
    _add_model_flags(convert)
    convert.add_argument("--checkpoint", required=True, help="official checkpoint (.pth)")
    convert.add_argument("--output", required=True, help="output .safetensors")
    convert.set_defaults(handler=_cmd_convert)

    lmdb = add_command(
        sub,
        "convert-lmdb",
        help="rewrite an official LMDB with pickle values (run once where pyarrow<12 is installed)",
        examples=[
            "etris convert-lmdb lmdb/refcoco/train.lmdb lmdb_pickle/refcoco/train.lmdb",
            "etris convert-lmdb lmdb/refcoco/val.lmdb lmdb_pickle/refcoco/val.lmdb",
        ],
    )
    lmdb.add_argument("source", help="LMDB written by the official preparation")
    lmdb.add_argument("destination", help="new LMDB path")
    lmdb.set_defaults(handler=_cmd_convert_lmdb)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
