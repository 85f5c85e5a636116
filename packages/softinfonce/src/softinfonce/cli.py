"""``softinfonce info | demo | generate | train | extract | eval | convert``.

Heavy modules (torch, the data pipeline) are imported inside the handlers, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from papers_shared.cli_utils import (
    add_command,
    add_run_flags,
    add_trainer_flags,
    build_package_parser,
    load_config_file,
    parse_and_run,
    trainer_config_from_args,
)
from softinfonce.config import WEIGHT_MODES, CoAugConfig, ModelConfig, PretrainConfig
from softinfonce.plugin import METHOD

__all__ = ["build_parser", "main"]

DEFAULT = PretrainConfig()
DEFAULT_AUG = CoAugConfig()
PAPER_EPOCHS = 30  # AVID's Kinetics recipe (the paper does not state its own)


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


def _given(args: argparse.Namespace, dest: str) -> bool:
    """Whether ``dest`` was typed on the command line (every value counts when unknown)."""
    explicit = getattr(args, "explicit_dests", None)
    return explicit is None or dest in explicit


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--data-root", type=Path, help="Kinetics layout: <root>/<split>/<class>/*.mp4"
    )
    group.add_argument("--csv", type=Path, help="clip list with columns path,label[,start,end]")
    parser.add_argument("--split", default="train", help="split folder under --data-root")


def _records(args: argparse.Namespace) -> list[Any]:
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

    def advance(count: int) -> None:
        bar.update(count)

    paths = generate_split(
        args.output_dir,
        args.split,
        args.num_clips,
        spec=spec,
        speeds=args.speeds,
        seed=args.seed,
        shard=args.shard,
        callback=advance,
    )
    bar.close()
    print(
        f"{len(paths)} clips in {Path(args.output_dir) / args.split} "
        f"(shard {args.shard[0]}/{args.shard[1]})"
    )
    return 0


# ---- train ------------------------------------------------------------------------------------
# flags named after PretrainConfig / CoAugConfig fields
TASK_FLAGS = (
    "batch_size",
    "lr",
    "weight_decay",
    "temperature",
    "weight_mode",
    "const_weight",
    "num_workers",
    "backend",
    "chunk_size",
)
AUGMENT_FLAGS = (
    "speeds",
    "num_frames",
    "frame_rate",
    "audio_duration",
    "sample_rate",
    "n_fft",
    "crop_size",
    "missing_audio",
    "speed_sampling",
    "audio_mode",
)
ARCH_PRESETS: dict[str, ModelConfig] = {
    "avid": ModelConfig(),
    "tiny": ModelConfig(
        video_depth=10,
        video_widths=(8, 16, 16, 32),
        audio_widths=(8, 16, 16, 32),
        head_dims=(64, 32),
        use_output_bn=True,
    ),
    "mlp": ModelConfig(arch="mlp", head_dims=(128, 64), use_output_bn=True),
}


def train_config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """The package config from, in rising priority: its defaults, ``--config`` (a JSON/YAML
    config or a run's ``config.json``), the flags typed on the command line."""
    if args.config is not None:
        config = PretrainConfig.from_dict(load_config_file(args.config))
    else:
        config = PretrainConfig()
    given = lambda dest: _given(args, dest) or args.config is None  # noqa: E731
    config = replace(config, **{name: getattr(args, name) for name in TASK_FLAGS if given(name)})
    augment = replace(
        config.augment, **{name: getattr(args, name) for name in AUGMENT_FLAGS if given(name)}
    )
    if args.vanilla:
        augment = replace(augment, use_augmented_view=False)
    model = ARCH_PRESETS[args.arch] if _given(args, "arch") or args.config is None else config.model
    return replace(
        config,
        augment=augment,
        model=model,
        cache_decoded=bool(args.cache) or config.cache_decoded,
    )


def _train(args: argparse.Namespace) -> int:
    from papers_shared.distributed import cleanup_distributed
    from softinfonce.train import pretrain

    config = train_config_from_args(args)
    trainer_config = trainer_config_from_args(args)
    try:
        result = pretrain(config, _records(args), trainer_config)
    finally:
        cleanup_distributed()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # one summary per job, from rank 0
    print(json.dumps({**result.final, "output_dir": str(result.run_dir)}, default=str))
    return 0


# ---- extract / eval / convert ----------------------------------------------------------------
def _load_model(checkpoint: Path) -> tuple[Any, PretrainConfig]:
    from papers_shared.checkpoint import load_state_dict_checked, read_state_dict
    from softinfonce.train import build_model

    config_path = checkpoint / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path} not found; point --checkpoint at a `softinfonce train` (or "
            "`softinfonce convert`) output folder"
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
    from softinfonce.convert import load_avid_checkpoint, save_converted
    from softinfonce.train import build_model

    config = PretrainConfig()
    model = build_model(config.model)
    load_avid_checkpoint(model, args.checkpoint, trust_checkpoint=args.trust_checkpoint)
    save_converted(model, config, args.output_dir, overwrite=args.overwrite)
    print(f"wrote {args.output_dir}/model.safetensors and config.json")
    return 0


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    train = add_command(
        subparsers,
        "train",
        help="pre-train with speed co-augmentation and SoftInfoNCE (runs unchanged under "
        "torchrun: DDP, gloo on CPU)",
        examples=[
            "softinfonce train --data-root clips --output-dir runs/pretrain --arch mlp "
            "--crop-size 16 --num-frames 8 --audio-duration 1 --sample-rate 8000 --n-fft 256 "
            "--batch-size 8 --max-steps 20",
            "torchrun --nproc_per_node 2 -m softinfonce.cli train --data-root clips "
            "--output-dir runs/ddp --arch tiny --batch-size 4 --max-steps 10",
        ],
    )
    _add_data_flags(train)
    add_run_flags(train)
    add_trainer_flags(train, epochs=PAPER_EPOCHS)
    model = train.add_argument_group("model")
    model.add_argument(
        "--arch",
        choices=tuple(ARCH_PRESETS),
        default="avid",
        help="avid: R(2+1)D-18 + Conv2D-10 (AVID); tiny: narrow R(2+1)D-10; mlp: 2-layer MLPs",
    )
    loss = train.add_argument_group("loss and optimiser")
    loss.add_argument(
        "--vanilla", action="store_true", help="no speed view: vanilla audio-visual InfoNCE"
    )
    loss.add_argument(
        "--weight-mode",
        choices=WEIGHT_MODES,
        default=DEFAULT.weight_mode,
        help="soft target of the same-clip/other-speed pair (zero: hard targets)",
    )
    loss.add_argument(
        "--const-weight",
        type=float,
        default=DEFAULT.const_weight,
        help="soft target with --weight-mode const",
    )
    loss.add_argument(
        "--temperature", type=float, default=DEFAULT.temperature, help="softmax temperature"
    )
    loss.add_argument("--lr", type=float, default=DEFAULT.lr, help="Adam learning rate")
    loss.add_argument(
        "--weight-decay", type=float, default=DEFAULT.weight_decay, help="Adam weight decay"
    )
    data = train.add_argument_group("data and augmentation")
    data.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT.batch_size,
        help="clips per step on each process (2 views each)",
    )
    data.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="views per encoder forward (gradient caching); none: all at once",
    )
    data.add_argument(
        "--num-workers", type=int, default=DEFAULT.num_workers, help="DataLoader workers"
    )
    data.add_argument(
        "--backend",
        choices=("auto", "decord", "pyav"),
        default=DEFAULT.backend,
        help="video decoder",
    )
    data.add_argument(
        "--cache", action="store_true", help="keep decoded clips in memory (small data)"
    )
    data.add_argument(
        "--speeds",
        type=_speeds,
        default=DEFAULT_AUG.speeds,
        help="augmented playback speeds, comma-separated",
    )
    data.add_argument(
        "--speed-sampling",
        choices=("per_sample", "per_batch"),
        default=DEFAULT_AUG.speed_sampling,
        help="one augmented speed per clip or per batch",
    )
    data.add_argument(
        "--audio-mode",
        choices=("resample", "time_stretch"),
        default=DEFAULT_AUG.audio_mode,
        help="resample raises the pitch with the speed (the paper); time_stretch keeps it",
    )
    data.add_argument(
        "--missing-audio",
        choices=("error", "zeros"),
        default=DEFAULT_AUG.missing_audio,
        help="clips without an audio stream: fail, or use silence",
    )
    for flag, kind, help_text in (
        ("--num-frames", int, "frames per view"),
        ("--frame-rate", float, "base frame rate of a speed-1 view (fps)"),
        ("--audio-duration", float, "seconds of audio per view"),
        ("--sample-rate", int, "audio sample rate (Hz)"),
        ("--n-fft", int, "FFT size of the log-spectrogram"),
        ("--crop-size", int, "spatial crop (pixels)"),
    ):
        dest = flag[2:].replace("-", "_")
        data.add_argument(flag, type=kind, default=getattr(DEFAULT_AUG, dest), help=help_text)
    train.set_defaults(handler=_train)


def build_parser() -> argparse.ArgumentParser:
    parser, subparsers = build_package_parser(
        METHOD,
        "Speed co-augmentation + SoftInfoNCE audio-visual pre-training "
        "(Wang et al., arXiv:2309.13942).",
        ["softinfonce info", "softinfonce demo --quick"],
    )

    gen = add_command(
        subparsers,
        "generate",
        help="write synthetic mp4 clips (coloured objects with harmonic sounds), resumable and "
        "sharded",
        examples=[
            "softinfonce generate --output-dir clips --split train --num-clips 64",
            "softinfonce generate --output-dir clips --split test --num-clips 32 "
            "--speeds 1.5,2.5 --shard 0/2",
        ],
    )
    gen.add_argument("--output-dir", type=Path, required=True, help="root of the clip folders")
    gen.add_argument("--split", default="train", help="split folder to write")
    gen.add_argument("--num-clips", type=int, default=64, help="clips in the split")
    gen.add_argument(
        "--num-classes", type=int, default=4, help="classes: identities x {slow, fast} (max 8)"
    )
    gen.add_argument("--duration", type=float, default=4.5, help="seconds per clip")
    gen.add_argument("--size", type=int, default=32, help="frame size (pixels, even)")
    gen.add_argument("--sample-rate", type=int, default=8000, help="audio sample rate (Hz)")
    gen.add_argument(
        "--speeds",
        type=_speeds,
        default=(1.0,),
        help="playback speeds the clips are recorded at (one drawn per clip)",
    )
    gen.add_argument("--seed", type=int, default=0, help="random seed of the clip parameters")
    gen.add_argument(
        "--shard", type=_shard, default=(0, 1), help="i/n: write every n-th clip from i"
    )
    gen.set_defaults(handler=_generate)

    _add_train_parser(subparsers)

    extract = add_command(
        subparsers,
        "extract",
        help="embed clips with a trained model (sharded, resumable chunks)",
        examples=[
            "softinfonce extract --checkpoint runs/pretrain --data-root clips --split test "
            "--output-dir feats/test",
            "softinfonce extract --checkpoint runs/pretrain --csv list.csv --output-dir feats "
            "--shard 1/4",
        ],
    )
    _add_data_flags(extract)
    extract.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="run folder with model.safetensors + config.json",
    )
    extract.add_argument("--output-dir", type=Path, required=True, help="feature folder")
    extract.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: every n-th chunk")
    extract.add_argument("--chunk-size", type=int, default=64, help="clips per saved chunk")
    extract.add_argument(
        "--eval-speed", type=float, default=1.0, help="playback speed of the embedded view"
    )
    extract.add_argument(
        "--backend", choices=("auto", "decord", "pyav"), default="auto", help="video decoder"
    )
    extract.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    extract.set_defaults(handler=_extract)

    evaluate = add_command(
        subparsers,
        "eval",
        help="linear probe, video retrieval top-k and video->audio R@k from extracted features",
        examples=[
            "softinfonce eval --train-features feats/train --test-features feats/test",
            "softinfonce eval --train-features feats/ucf_train --test-features feats/ucf_test -q",
        ],
    )
    evaluate.add_argument(
        "--train-features", type=Path, required=True, help="features of the training clips"
    )
    evaluate.add_argument(
        "--test-features", type=Path, required=True, help="features of the test clips"
    )
    evaluate.set_defaults(handler=_evaluate)

    convert = add_command(
        subparsers,
        "convert",
        help="AVID checkpoint (.pth) -> model.safetensors + config.json",
        examples=[
            "softinfonce convert --checkpoint avid_kinetics.pth.tar --output-dir avid_init",
            "softinfonce convert --checkpoint checkpoint.pth.tar --output-dir init --overwrite",
        ],
    )
    convert.add_argument("--checkpoint", type=Path, required=True, help="AVID .pth file")
    convert.add_argument("--output-dir", type=Path, required=True, help="folder to write")
    convert.add_argument(
        "--overwrite", action="store_true", help="replace weights already in --output-dir"
    )
    convert.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle the whole file, running code stored in it; only for files from a "
        "source you trust",
    )
    convert.set_defaults(handler=_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
