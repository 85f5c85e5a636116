"""``softinfonce info | demo | generate | train | extract | eval | convert``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from papers_shared.cli_utils import add_verbosity_flags, build_package_parser, parse_and_run
from softinfonce.plugin import METHOD

__all__ = ["build_parser", "main"]


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _sub(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, *examples: str
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=_examples(*examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbosity_flags(parser)
    return parser


def _speeds(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"speeds must be comma-separated numbers, got {text!r}"
        ) from err
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"speeds must be positive, got {text!r}")
    return values


def _shard(text: str) -> tuple[int, int]:
    from papers_shared.sharding import parse_shard

    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--data-root", type=Path, help="Kinetics layout: <root>/<split>/<class>/*.mp4"
    )
    group.add_argument("--csv", type=Path, help="clip list with columns path,label[,start,end]")
    parser.add_argument("--split", default="train", help="split folder under --data-root")


def _records(args: argparse.Namespace):
    from softinfonce.data import kinetics_folder, read_clip_csv

    if args.csv is not None:
        return read_clip_csv(args.csv)
    return kinetics_folder(args.data_root, args.split)[0]


# ---- generate ---------------------------------------------------------------------------------
def _generate(args: argparse.Namespace) -> int:
    from papers_shared.progress import progress_bar
    from softinfonce.data.synthetic import SyntheticSpec, generate_split

    spec = SyntheticSpec(
        num_classes=args.num_classes,
        duration=args.duration,
        size=args.size,
        sample_rate=args.sample_rate,
    )
    bar = progress_bar(
        total=len(range(args.shard[0], args.num_clips, args.shard[1])),
        enabled=None,
        desc="generate",
    )
    paths = generate_split(
        args.output_dir,
        args.split,
        args.num_clips,
        spec=spec,
        speeds=args.speeds,
        seed=args.seed,
        shard=args.shard,
        callback=bar.update,
    )
    bar.close()
    print(
        f"{len(paths)} clips in {Path(args.output_dir) / args.split} (shard {args.shard[0]}/{args.shard[1]})"
    )
    return 0


# ---- train ------------------------------------------------------------------------------------
TRAIN_OVERRIDES = {
    "batch_size": "batch_size",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "lr": "lr",
    "weight_mode": "weight_mode",
    "temperature": "temperature",
    "num_workers": "num_workers",
    "backend": "backend",
    "seed": "seed",
    "const_weight": "const_weight",
    "precision": "precision",
    "chunk_size": "chunk_size",
}
AUGMENT_OVERRIDES = {
    "speeds": "speeds",
    "num_frames": "num_frames",
    "frame_rate": "frame_rate",
    "audio_duration": "audio_duration",
    "sample_rate": "sample_rate",
    "n_fft": "n_fft",
    "crop_size": "crop_size",
    "missing_audio": "missing_audio",
    "speed_sampling": "speed_sampling",
    "audio_mode": "audio_mode",
}


def _train_config(args: argparse.Namespace):
    from softinfonce.train import ModelConfig, PretrainConfig

    config = (
        PretrainConfig.from_dict(json.loads(Path(args.config).read_text()))
        if args.config
        else PretrainConfig()
    )
    config = replace(
        config,
        **{f: getattr(args, a) for a, f in TRAIN_OVERRIDES.items() if getattr(args, a) is not None},
    )
    augment = replace(
        config.augment,
        **{
            f: getattr(args, a)
            for a, f in AUGMENT_OVERRIDES.items()
            if getattr(args, a) is not None
        },
    )
    if args.vanilla:
        augment = replace(augment, use_augmented_view=False)
    model = config.model
    if args.arch == "mlp":
        model = ModelConfig(arch="mlp", head_dims=(128, 64), use_output_bn=True)
    elif args.arch == "tiny":
        model = ModelConfig(
            video_depth=10,
            video_widths=(8, 16, 16, 32),
            audio_widths=(8, 16, 16, 32),
            head_dims=(64, 32),
            use_output_bn=True,
        )
    return replace(config, augment=augment, model=model, cache_decoded=args.cache)


def _train(args: argparse.Namespace) -> int:
    from papers_shared.distributed import cleanup_distributed
    from softinfonce.train import pretrain

    config = _train_config(args)
    try:
        result = pretrain(
            config, _records(args), output_dir=args.output_dir, progress=None, device=args.device
        )
    finally:
        cleanup_distributed()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # one summary per job, from rank 0
    last = result.history[-1]
    print(
        json.dumps(
            {
                "steps": result.steps,
                "seconds": round(result.seconds, 2),
                **last,
                "output_dir": str(args.output_dir),
            }
        )
    )
    return 0


# ---- extract / eval / convert ----------------------------------------------------------------
def _load_model(checkpoint: Path):
    from papers_shared.checkpoint import load_state_dict_checked, read_state_dict
    from softinfonce.train import PretrainConfig, build_model

    config_path = checkpoint / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path} not found; point --checkpoint at a `softinfonce train` output folder"
        )
    config = PretrainConfig.from_dict(json.loads(config_path.read_text()))
    model = build_model(config.model, config.augment)
    load_state_dict_checked(model, read_state_dict(checkpoint / "model.safetensors"))
    return model.eval(), config


def _extract(args: argparse.Namespace) -> int:
    from softinfonce.data import SpeedCoAugDataset
    from softinfonce.evaluate import extract_features_job

    model, config = _load_model(args.checkpoint)
    dataset = SpeedCoAugDataset(
        _records(args),
        config.augment,
        train=False,
        eval_speed=args.eval_speed,
        backend=args.backend,
    )
    paths = extract_features_job(
        model,
        dataset,
        args.output_dir,
        shard=args.shard,
        chunk_size=args.chunk_size,
        device=args.device,
    )
    print(
        f"{len(paths)} feature chunks in {args.output_dir} (shard {args.shard[0]}/{args.shard[1]})"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from softinfonce.evaluate import (
        cross_modal_recall,
        linear_probe,
        load_feature_parts,
        retrieval_topk,
    )

    train, test = load_feature_parts(args.train_features), load_feature_parts(args.test_features)
    results = {
        "video_to_audio": cross_modal_recall(test["z_video"], test["z_audio"]),
        "video_retrieval": retrieval_topk(
            test["video_feat"], test["label"], train["video_feat"], train["label"]
        ),
        "linear_probe_top1": linear_probe(
            train["video_feat"], train["label"], test["video_feat"], test["label"]
        ),
    }
    print(json.dumps(results, indent=2))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from softinfonce.convert import load_avid_checkpoint
    from softinfonce.train import PretrainConfig, build_model, save_pretrained

    config = PretrainConfig()
    model = build_model(config.model)
    load_avid_checkpoint(model, args.checkpoint)
    save_pretrained(model, config, args.output_dir)
    print(f"wrote {args.output_dir}/model.safetensors and config.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, subparsers = build_package_parser(
        METHOD,
        "Speed co-augmentation + SoftInfoNCE audio-visual pre-training.",
        ["softinfonce info", "softinfonce demo --quick"],
    )

    gen = _sub(
        subparsers,
        "generate",
        "write synthetic mp4 clips (moving bar + tone), resumable and sharded",
        "softinfonce generate --output-dir clips --split train --num-clips 64",
        "softinfonce generate --output-dir clips --split test --num-clips 32 --speeds 1.5,2.5 --shard 0/2",
    )
    gen.add_argument("--output-dir", type=Path, required=True)
    gen.add_argument("--split", default="train")
    gen.add_argument("--num-clips", type=int, default=64)
    gen.add_argument("--num-classes", type=int, default=4)
    gen.add_argument("--duration", type=float, default=4.5)
    gen.add_argument("--size", type=int, default=32)
    gen.add_argument("--sample-rate", type=int, default=8000)
    gen.add_argument(
        "--speeds", type=_speeds, default=(1.0,), help="playback speeds the clips are recorded at"
    )
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--shard", type=_shard, default=(0, 1), help="i/n: write every n-th clip from i"
    )
    gen.set_defaults(handler=_generate)

    train = _sub(
        subparsers,
        "train",
        "pre-train (runs unchanged under torchrun: DDP, gloo on CPU)",
        "softinfonce train --data-root clips --arch mlp --crop-size 16 --num-frames 8 --max-steps 20 --batch-size 8",
        "torchrun --nproc_per_node 2 -m softinfonce.cli train --data-root clips --arch tiny --batch-size 8 --max-steps 10",
    )
    _add_data_flags(train)
    train.add_argument(
        "--config", type=Path, help="config.json of an earlier run (flags override it)"
    )
    train.add_argument("--output-dir", type=Path, default=Path("runs/softinfonce/train"))
    train.add_argument(
        "--arch",
        choices=("avid", "tiny", "mlp"),
        default=None,
        help="avid = R(2+1)D-18 + Conv2D-10",
    )
    train.add_argument("--vanilla", action="store_true", help="no speed view: vanilla AV InfoNCE")
    train.add_argument(
        "--cache", action="store_true", help="keep decoded clips in memory (small data)"
    )
    train.add_argument("--device", default=None)
    for flag, kind in (
        ("batch-size", int),
        ("epochs", int),
        ("max-steps", int),
        ("lr", float),
        ("temperature", float),
        ("num-workers", int),
        ("seed", int),
        ("const-weight", float),
        ("chunk-size", int),
        ("num-frames", int),
        ("frame-rate", float),
        ("audio-duration", float),
        ("sample-rate", int),
        ("n-fft", int),
        ("crop-size", int),
    ):
        train.add_argument(f"--{flag}", type=kind, default=None)
    train.add_argument("--weight-mode", choices=("feature", "ratio", "const", "zero"), default=None)
    train.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default=None,
        help="autocast: auto = bf16 on GPU, fp32 on CPU; fp16 (GPU) uses a GradScaler",
    )
    train.add_argument("--speeds", type=_speeds, default=None, help="augmented speeds, e.g. 2,3,4")
    train.add_argument("--backend", choices=("auto", "decord", "pyav"), default=None)
    train.add_argument("--missing-audio", choices=("error", "zeros"), default=None)
    train.add_argument("--speed-sampling", choices=("per_sample", "per_batch"), default=None)
    train.add_argument("--audio-mode", choices=("resample", "time_stretch"), default=None)
    train.set_defaults(handler=_train)

    extract = _sub(
        subparsers,
        "extract",
        "embed clips with a trained model (sharded, resumable chunks)",
        "softinfonce extract --checkpoint runs/softinfonce/train --data-root clips --split test --output-dir feats/test",
        "softinfonce extract --checkpoint runs/softinfonce/train --csv list.csv --output-dir feats --shard 1/4",
    )
    _add_data_flags(extract)
    extract.add_argument(
        "--checkpoint", type=Path, required=True, help="folder with model.safetensors + config.json"
    )
    extract.add_argument("--output-dir", type=Path, required=True)
    extract.add_argument("--shard", type=_shard, default=(0, 1))
    extract.add_argument("--chunk-size", type=int, default=64)
    extract.add_argument("--eval-speed", type=float, default=1.0)
    extract.add_argument("--backend", choices=("auto", "decord", "pyav"), default="auto")
    extract.add_argument("--device", default="cpu")
    extract.set_defaults(handler=_extract)

    evaluate = _sub(
        subparsers,
        "eval",
        "linear probe, video retrieval top-k and video->audio R@k from extracted features",
        "softinfonce eval --train-features feats/train --test-features feats/test",
        "softinfonce eval --train-features feats/ucf_train --test-features feats/ucf_test -q",
    )
    evaluate.add_argument("--train-features", type=Path, required=True)
    evaluate.add_argument("--test-features", type=Path, required=True)
    evaluate.set_defaults(handler=_evaluate)

    convert = _sub(
        subparsers,
        "convert",
        "AVID checkpoint (.pth) -> model.safetensors + config.json",
        "softinfonce convert --checkpoint avid_kinetics.pth.tar --output-dir avid_init",
        "softinfonce convert --checkpoint checkpoint.pth.tar --output-dir init -v",
    )
    convert.add_argument("--checkpoint", type=Path, required=True)
    convert.add_argument("--output-dir", type=Path, required=True)
    convert.set_defaults(handler=_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
