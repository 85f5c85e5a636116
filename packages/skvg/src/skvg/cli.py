"""``skvg`` command line: train | predict | eval | validate | stats | info | demo.
The only module that parses arguments or prints."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from papers_shared.cli_utils import (
    add_command,
    add_run_flags,
    add_trainer_flags,
    build_package_parser,
    parse_and_run,
    trainer_config_from_args,
)
from skvg.plugin import METHOD


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if getattr(args, "json", False) else text)


def _validate(args: argparse.Namespace) -> int:
    from skvg.data.annotations import validate_annotations

    path = (
        Path(args.data_root) / "annotations.json"
        if Path(args.data_root).is_dir()
        else Path(args.data_root)
    )
    if not path.is_file():
        raise FileNotFoundError(f"no annotations.json at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}") from None
    images = path.parent / "images" if args.check_images else None
    problems = validate_annotations(data, images_dir=images, strict=args.strict)
    _emit(
        args,
        {"problems": [str(p) for p in problems], "valid": not problems},
        "\n".join(str(p) for p in problems) if problems else f"{path}: valid",
    )
    return 1 if problems else 0


def _stats(args: argparse.Namespace) -> int:
    from skvg.data.annotations import load_annotations, split_statistics

    stats = split_statistics(load_annotations(args.data_root))
    lines = [f"{split}: {json.dumps(values)}" for split, values in stats.items()]
    _emit(args, stats, "\n".join(lines))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from skvg.data.annotations import load_annotations
    from skvg.evaluate import evaluate, load_predictions

    records = load_annotations(args.data_root)[args.split]
    result = evaluate(load_predictions(args.predictions), records, convention=args.bbox_convention)
    text = "  ".join(
        f"{k} {100 * result[k]:.2f} (n={result['n_' + k]})"
        for k in ("all", "easy", "medium", "hard")
        if result.get(k) is not None
    )
    _emit(args, result, f"Acc@0.5: {text}")
    return 0


def _tokenizer(text_model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(text_model)


def _datasets(args: argparse.Namespace, tokenizer: Any, cfg: Any, split: str, train: bool) -> Any:
    from skvg.data.annotations import load_annotations
    from skvg.data.datasets import GroundingDataset

    data = load_annotations(args.data_root)
    proposals = None
    if args.model == "levilm":
        if args.proposals is None:
            raise ValueError(
                "--model levilm needs --proposals FILE (per split, one list of xyxy boxes per record)"
            )
        proposals = json.loads(Path(args.proposals).read_text())[split]
    common: dict[str, Any] = {"size": cfg.image_size, "use_knowledge": not args.no_knowledge}
    if args.model == "kevili":
        common.update(
            max_query_len=cfg.max_query_len, max_knowledge_len=cfg.max_knowledge_len, train=train
        )
    else:
        common.update(mode="levilm", proposals=proposals, max_text_len=cfg.max_text_len)
    return data[split], GroundingDataset(
        data[split], Path(args.data_root) / "images", tokenizer, **common
    )


def _model_config(args: argparse.Namespace) -> Any:
    from skvg.config import KeViLIConfig, LeViLMConfig

    if args.model == "kevili":
        return KeViLIConfig(
            backbone=args.backbone,
            text_model=args.text_model,
            image_size=args.image_size,
            ke_layers=args.ke_layers,
            knowledge_fusion=args.fusion,
            max_knowledge_len=args.max_knowledge_len,
        )
    return LeViLMConfig(
        backbone=args.backbone, text_model=args.text_model, image_size=args.image_size
    )


def _build(args: argparse.Namespace, cfg: Any) -> Any:
    from skvg.models.kevili import KeViLI
    from skvg.models.levilm import LeViLM

    return KeViLI(cfg) if args.model == "kevili" else LeViLM(cfg)


def _train(args: argparse.Namespace) -> int:
    import torch

    from papers_shared.trainer import Trainer
    from skvg.config import TrainConfig
    from skvg.data.datasets import collate
    from skvg.train import KeViLITask, LeViLMTask

    if args.output_dir is None:
        raise ValueError("--output-dir is required (the run folder)")
    cfg = _model_config(args)
    tokenizer = _tokenizer(args.text_model)
    train_cfg = TrainConfig(
        lr=args.lr,
        lr_pretrained=args.lr_pretrained,
        batch_size=args.batch_size,
        lr_drop_epoch=args.lr_drop_epoch,
        use_knowledge=not args.no_knowledge,
    )
    _, train_ds = _datasets(args, tokenizer, cfg, "train", True)
    val_records, val_ds = _datasets(args, tokenizer, cfg, "val", False)

    def loader() -> Any:
        return torch.utils.data.DataLoader(
            train_ds,
            batch_size=args.batch_size,
            shuffle=True,
            collate_fn=collate,
            num_workers=args.workers,
        )

    def val_loader() -> Any:
        return torch.utils.data.DataLoader(val_ds, batch_size=args.batch_size, collate_fn=collate)

    task_cls = KeViLITask if args.model == "kevili" else LeViLMTask
    task = task_cls(cfg, train_cfg, lambda: _build(args, cfg), loader, val_loader, val_records)
    result = Trainer(task, trainer_config_from_args(args)).fit()
    tokenizer.save_pretrained(str(Path(args.output_dir) / "tokenizer"))
    _emit(
        args, result.final, f"run folder {result.run_dir}: {json.dumps(result.final, default=str)}"
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import load_file

    from skvg.data.datasets import collate
    from skvg.train import predict_boxes, predictions_file

    run = Path(args.model_dir)
    if not (run / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{run} holds no model.safetensors (a finished 'skvg train' run folder)"
        )
    saved = json.loads((run / "config.json").read_text())["task"]["model"]
    from skvg.config import KeViLIConfig, LeViLMConfig

    cfg = KeViLIConfig.from_dict(saved) if args.model == "kevili" else LeViLMConfig.from_dict(saved)
    tok_dir = run / "tokenizer"
    tokenizer = _tokenizer(str(tok_dir) if tok_dir.is_dir() else cfg.text_model)
    model = _build(args, cfg)
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    _, ds = _datasets(args, tokenizer, cfg, args.split, False)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, collate_fn=collate)
    preds = predictions_file(predict_boxes(model, loader, args.model), args.bbox_convention)
    Path(args.output).write_text(json.dumps(preds))
    _emit(
        args,
        {"predictions": len(preds), "output": str(args.output)},
        f"{len(preds)} predictions -> {args.output}",
    )
    return 0


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root", type=Path, required=True, help="SK-VG.v1 folder (annotations.json, images/)"
    )
    p.add_argument("--model", choices=("kevili", "levilm"), default="kevili", help="which model")
    p.add_argument(
        "--proposals",
        type=Path,
        default=None,
        help="LeViLM proposals JSON {split: [[xyxy, ...], ...]}",
    )
    p.add_argument(
        "--no-knowledge",
        action="store_true",
        help="blank every knowledge passage (query-only baseline)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch (per process)")


def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "SK-VG: visual grounding with scene knowledge - dataset tools, evaluator, KeViLI and LeViLM.",
        ["skvg demo --quick", "skvg eval --data-root SK-VG.v1 --predictions preds.json"],
    )
    p = add_command(
        sub,
        "validate",
        help="check annotations.json (and images) record by record",
        examples=[
            "skvg validate --data-root SK-VG.v1",
            "skvg validate --data-root SK-VG.v1 --check-images --strict",
        ],
    )
    p.add_argument(
        "--data-root", type=Path, required=True, help="SK-VG.v1 folder or annotations.json"
    )
    p.add_argument(
        "--check-images", action="store_true", help="also check that every image file exists"
    )
    p.add_argument("--strict", action="store_true", help="refuse extra keys in train/val records")
    p.set_defaults(handler=_validate)

    p = add_command(
        sub,
        "stats",
        help="records, images, levels and text lengths per split",
        examples=["skvg stats --data-root SK-VG.v1", "skvg stats --data-root SK-VG.v1 --json"],
    )
    p.add_argument("--data-root", type=Path, required=True, help="SK-VG.v1 folder")
    p.set_defaults(handler=_stats)

    p = add_command(
        sub,
        "eval",
        help="Acc@0.5 overall and per difficulty of a prediction file",
        examples=[
            "skvg eval --data-root SK-VG.v1 --predictions preds.json",
            "skvg eval --data-root SK-VG.v1 --predictions preds.json --split val --json",
        ],
    )
    p.add_argument("--data-root", type=Path, required=True, help="SK-VG.v1 folder")
    p.add_argument(
        "--predictions",
        type=Path,
        required=True,
        help='JSON list of {"index": i, "bbox": {"x", "y", "width", "height"}} (centre convention)',
    )
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="test",
        help="split the predictions follow",
    )
    p.add_argument(
        "--bbox-convention",
        choices=("center", "topleft"),
        default="center",
        help="meaning of (x, y)",
    )
    p.set_defaults(handler=_eval)

    p = add_command(
        sub,
        "train",
        help="train KeViLI or LeViLM (TransVG's optimiser) on the shared trainer",
        examples=[
            "skvg train --data-root SK-VG.v1 --output-dir runs/kevili",
            "skvg train --data-root SK-VG.v1 --model levilm --proposals props.json --output-dir runs/levilm",
        ],
    )
    _model_flags(p)
    add_run_flags(p)
    add_trainer_flags(p, epochs=90)
    p.add_argument(
        "--text-model", default="bert-base-uncased", help="transformers model name or path"
    )
    p.add_argument(
        "--backbone",
        choices=("resnet50", "resnet101", "resnet18", "tiny"),
        default="resnet50",
        help="visual backbone",
    )
    p.add_argument("--image-size", type=int, default=640, help="letterbox canvas")
    p.add_argument(
        "--ke-layers", type=int, default=6, help="knowledge-embedding layers (0: TransVG)"
    )
    p.add_argument("--fusion", choices=("joint", "cross"), default="joint", help="knowledge fusion")
    p.add_argument("--max-knowledge-len", type=int, default=128, help="knowledge tokens")
    p.add_argument("--lr", type=float, default=1e-4, help="lr of new modules")
    p.add_argument(
        "--lr-pretrained", type=float, default=1e-5, help="lr of backbone and text encoder"
    )
    p.add_argument(
        "--lr-drop-epoch", type=int, default=60, help="divide the lr by 10 at this epoch"
    )
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.set_defaults(handler=_train)

    p = add_command(
        sub,
        "predict",
        help="predict boxes for a split with a trained run folder",
        examples=[
            "skvg predict --data-root SK-VG.v1 --model-dir runs/kevili --output preds.json",
            "skvg predict --data-root SK-VG.v1 --model levilm --proposals props.json --model-dir runs/levilm --output preds.json",
        ],
    )
    _model_flags(p)
    p.add_argument(
        "--model-dir", type=Path, required=True, help="a finished 'skvg train' run folder"
    )
    p.add_argument(
        "--split", choices=("train", "val", "test"), default="test", help="split to predict"
    )
    p.add_argument("--output", type=Path, default=Path("predictions.json"), help="prediction file")
    p.add_argument(
        "--bbox-convention",
        choices=("center", "topleft"),
        default="center",
        help="output convention",
    )
    p.set_defaults(handler=_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
