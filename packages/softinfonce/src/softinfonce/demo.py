"""The paper's claim in miniature on generated mp4 clips, through the real decode path.

The claim (Wang et al., arXiv:2309.13942, abstract): speed co-augmentation improves audio-visual
pre-training over vanilla audio-visual contrastive learning, and SoftInfoNCE, which gives the
same-clip/other-speed pair a soft target instead of treating it as a negative, adds to it.

The generated clips (:mod:`softinfonce.data.synthetic`) have what the claim needs: a class is an
identity (object colour and shape, sound timbre) that survives a change of playback speed, while
speed stays visible (rate of motion and loudness pulses, pitch), and pairs of classes differ only in
rate. Three arms, same data, seeds and budget (steps x clips per step):

* ``infonce``: vanilla audio-visual InfoNCE, one speed-1 view per clip;
* ``infonce_speed``: speed co-augmentation with hard targets (the other-speed view of the same
  clip is a negative, w = 0);
* ``softinfonce``: speed co-augmentation with SoftInfoNCE (feature weights, the package default).

Measured on held-out clips: cross-speed video retrieval (queries recorded at 1x, gallery of other
clips recorded at 1.5x and 2.5x, speeds no arm trains on; a hit is a nearest gallery clip of the
query's class, frozen video backbone features) and a linear probe on the frozen video backbone
(train clips -> held-out 1x clips). The margins below are fixed before any run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from papers_shared.methods import DemoResult, Table
from papers_shared.runs import make_run_dir, plot_curves, write_metrics
from papers_shared.trainer import TrainerConfig
from papers_shared.verdict import ClaimVerdict, judge_claim
from softinfonce.augment import CoAugConfig
from softinfonce.config import ModelConfig, PretrainConfig
from softinfonce.data.datasets import ClipRecord, SpeedCoAugDataset, kinetics_folder
from softinfonce.data.synthetic import SyntheticSpec, generate_split
from softinfonce.evaluate import (
    cross_modal_recall,
    extract_embeddings,
    linear_probe,
    retrieval_topk,
)
from softinfonce.losses import WeightMode
from softinfonce.models.avid import AVModel
from softinfonce.train import pretrain

__all__ = [
    "ARMS",
    "DEMO_SPEC",
    "FULL",
    "MARGIN_PROBE",
    "MARGIN_RETRIEVAL",
    "QUICK",
    "TEST_SPEEDS",
    "Arm",
    "DemoSettings",
    "demo_augment_config",
    "demo_model_config",
    "judge_demo",
    "run_demo",
]

logger = logging.getLogger(__name__)

# 4 identities x {slow, fast}: 8 classes; a batch of 32 clips holds about 4 clips of each class.
DEMO_SPEC = SyntheticSpec(num_classes=8, duration=4.5, fps=30, size=32, sample_rate=8000)
TEST_SPEEDS = (1.5, 2.5)  # gallery speeds; training sees 1x and the augmented 2x, 3x, 4x

# Margins, fixed before the demo was run (percentage points, paired over seeds).
MARGIN_RETRIEVAL = 2.0
MARGIN_PROBE = 2.0
RETRIEVAL_METRIC = "cross-speed retrieval top-1 (%)"
PROBE_METRIC = "linear probe top-1 (%)"


@dataclass(frozen=True)
class Arm:
    """One pre-training recipe of the comparison."""

    label: str
    use_speed_view: bool
    weight_mode: WeightMode


ARMS: dict[str, Arm] = {
    "infonce": Arm("InfoNCE, no speed aug", False, "zero"),
    "infonce_speed": Arm("InfoNCE + speed aug (hard targets)", True, "zero"),
    "softinfonce": Arm("SoftInfoNCE (speed aug, soft targets)", True, "feature"),
}


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run; every arm and seed uses the same."""

    num_train: int
    num_test: int
    steps: int
    batch_size: int
    num_seeds: int


QUICK = DemoSettings(num_train=64, num_test=48, steps=60, batch_size=16, num_seeds=1)
FULL = DemoSettings(num_train=160, num_test=96, steps=150, batch_size=32, num_seeds=3)


def demo_augment_config(**overrides: Any) -> CoAugConfig:
    """Tiny clips: 8 frames at 8 fps, 16 px crops, 1 s of 8 kHz audio (100 x 65 spectrogram)."""
    base = CoAugConfig(
        num_frames=8,
        frame_rate=8.0,
        audio_duration=1.0,
        sample_rate=8000,
        n_fft=256,
        crop_size=16,
        crop_scale=(0.5, 1.0),
        flip_prob=0.0,
        color_jitter=(0.3, 0.3, 0.3, 0.0),
    )
    return replace(base, **overrides)


def demo_model_config() -> ModelConfig:
    """2-layer MLP backbones (256 hidden, 128 features), 128-64 heads with a centring output BN."""
    return ModelConfig(
        arch="mlp", mlp_hidden=256, mlp_features=128, head_dims=(128, 64), use_output_bn=True
    )


def demo_pretrain_config(arm: Arm, settings: DemoSettings) -> PretrainConfig:
    """The pre-training recipe of ``arm``: the package defaults except the tiny sizes and lr."""
    return PretrainConfig(
        augment=demo_augment_config(use_augmented_view=arm.use_speed_view),
        model=demo_model_config(),
        weight_mode=arm.weight_mode,
        lr=1e-3,  # Adam; 2e-4 (AVID) is for 30 epochs of Kinetics, too slow for 150 steps
        batch_size=settings.batch_size,
        num_workers=0,
        cache_decoded=True,
    )


def demo_trainer_config(
    output_dir: Path, settings: DemoSettings, seed: int, progress: bool
) -> TrainerConfig:
    """``settings.steps`` optimizer steps on CPU in fp32, one checkpoint at the end."""
    epochs = -(-settings.steps // (settings.num_train // settings.batch_size))
    return TrainerConfig(
        output_dir=output_dir,
        epochs=epochs,
        max_steps=settings.steps,
        precision="fp32",
        device="cpu",
        seed=seed,
        eval_every=0,
        save_every=epochs,
        log_every=50,
        progress=progress,
    )


def _generate(root: Path, settings: DemoSettings, seed: int) -> dict[str, list[ClipRecord]]:
    """train (1x, long enough for 4x views), query (1x) and gallery (1.5x / 2.5x) clips."""
    short = replace(DEMO_SPEC, duration=1.5)
    generate_split(root, "train", settings.num_train, spec=DEMO_SPEC, seed=seed)
    generate_split(root, "query", settings.num_test, spec=short, seed=seed)
    generate_split(root, "gallery", settings.num_test, spec=short, speeds=TEST_SPEEDS, seed=seed)
    return {split: kinetics_folder(root, split)[0] for split in ("train", "query", "gallery")}


def _evaluate(model: AVModel, datasets: dict[str, SpeedCoAugDataset]) -> dict[str, float]:
    feats = {name: extract_embeddings(model, data) for name, data in datasets.items()}
    query, gallery, train = feats["query"], feats["gallery"], feats["train"]
    retrieval = retrieval_topk(
        query["video_feat"], query["label"], gallery["video_feat"], gallery["label"], ks=(1, 5)
    )
    probe = linear_probe(train["video_feat"], train["label"], query["video_feat"], query["label"])
    recall = cross_modal_recall(gallery["z_video"], gallery["z_audio"], ks=(1,))
    return {
        "retrieval_top1": 100 * retrieval["top1"],
        "retrieval_top5": 100 * retrieval["top5"],
        "linear_probe": 100 * probe,
        "v2a_R@1_gallery": 100 * recall["R@1"],
    }


def judge_demo(results: Mapping[str, Sequence[float]], *, quick: bool) -> list[ClaimVerdict]:
    """The verdicts of the claim from per-seed results keyed ``<arm>/<metric>``.

    Speed co-augmentation beats vanilla InfoNCE, and SoftInfoNCE beats speed co-augmentation with
    hard targets, each on cross-speed retrieval and on the linear probe.
    """
    verdicts = []
    for metric, key, margin in (
        (RETRIEVAL_METRIC, "retrieval_top1", MARGIN_RETRIEVAL),
        (PROBE_METRIC, "linear_probe", MARGIN_PROBE),
    ):
        for method, baseline in (("infonce_speed", "infonce"), ("softinfonce", "infonce_speed")):
            verdicts.append(
                judge_claim(
                    list(results[f"{method}/{key}"]),
                    list(results[f"{baseline}/{key}"]),
                    margin,
                    method_name=ARMS[method].label,
                    baseline_name=ARMS[baseline].label,
                    metric=metric,
                    quick=quick,
                )
            )
    return verdicts


def run_demo(
    *,
    full: bool = False,
    output_root: Path = Path("runs"),
    progress: bool | None = None,
    seed: int = 0,
) -> DemoResult:
    """Pre-train every arm on ``num_seeds`` seeds (``seed``, ``seed + 1``, ...) and judge the claim."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only spin (and 2 cores are shared)
    try:
        return _run(FULL if full else QUICK, full, output_root, progress, seed)
    finally:
        torch.set_num_threads(threads)


def _mean_std(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.1f} +- {std:.1f}"


def _run(
    settings: DemoSettings, full: bool, output_root: Path, progress: bool | None, seed: int
) -> DemoResult:
    run_dir = make_run_dir("softinfonce", output_root)
    started = time.perf_counter()
    seeds = [seed + i for i in range(settings.num_seeds)]
    results: dict[str, list[float]] = {}
    per_run: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    eval_aug = demo_augment_config()
    for run_seed in seeds:
        records = _generate(run_dir / f"clips_seed{run_seed}", settings, run_seed)
        datasets = {
            name: SpeedCoAugDataset(recs, eval_aug, train=False, cache=True)
            for name, recs in records.items()
        }
        for key, arm in ARMS.items():
            result = pretrain(
                demo_pretrain_config(arm, settings),
                records["train"],
                demo_trainer_config(
                    run_dir / f"{key}_seed{run_seed}", settings, run_seed, bool(progress)
                ),
                decoded_from=datasets["train"],
            )
            scores = _evaluate(result.model, datasets)
            for metric, value in scores.items():
                results.setdefault(f"{key}/{metric}", []).append(value)
            per_run.append(
                {
                    "arm": key,
                    "seed": run_seed,
                    **scores,
                    "final_loss": result.history[-1]["train_loss"],
                    "mean_w": result.history[-1].get("train_mean_w", float("nan")),
                    "train_seconds": sum(h["seconds"] for h in result.history),
                }
            )
            curves[f"{key} seed {run_seed}"] = [h["train_loss"] for h in result.history]
            logger.info("%s seed %d: %s", key, run_seed, scores)
    verdicts = judge_demo(results, quick=not full)
    rows = [
        [
            arm.label,
            _mean_std(results[f"{key}/retrieval_top1"]),
            _mean_std(results[f"{key}/retrieval_top5"]),
            _mean_std(results[f"{key}/linear_probe"]),
            _mean_std(results[f"{key}/v2a_R@1_gallery"]),
        ]
        for key, arm in ARMS.items()
    ]
    chance = 100 / DEMO_SPEC.num_classes
    table = Table(
        headers=[
            "arm",
            "cross-speed retrieval top-1 (%)",
            "top-5 (%)",
            "linear probe top-1 (%)",
            "v->a R@1 at 1.5x/2.5x (%)",
        ],
        rows=rows,
        title=(
            f"softinfonce demo ({'full' if full else 'quick'}): {settings.steps} steps x "
            f"{settings.batch_size} clips, seeds {seeds}, mean +- std"
        ),
        notes=[
            f"{DEMO_SPEC.num_classes} classes (4 identities x slow/fast), {settings.num_train} "
            f"training clips; {settings.num_test} query clips at 1x, {settings.num_test} gallery "
            f"clips at {TEST_SPEEDS[0]}x/{TEST_SPEEDS[1]}x (chance top-1 {chance:.1f} %)",
            *[f"- {v.line()}" for v in verdicts],
        ],
    )
    write_metrics(
        run_dir,
        {
            "settings": settings.__dict__,
            "seeds": seeds,
            "margins": {"retrieval": MARGIN_RETRIEVAL, "probe": MARGIN_PROBE},
            "runs": per_run,
            "verdicts": [v.to_dict() for v in verdicts],
            "seconds": time.perf_counter() - started,
        },
    )
    plot_curves(
        curves,
        run_dir / "loss.png",
        title="pre-training loss (not comparable across arms)",
        ylabel="loss (mean per epoch)",
    )
    return DemoResult(
        package="softinfonce",
        claim=(
            "speed co-augmentation beats vanilla AV InfoNCE and SoftInfoNCE adds more "
            "(cross-speed retrieval and linear probe)"
        ),
        metric=RETRIEVAL_METRIC,
        table=table,
        run_dir=run_dir,
        details={"runs": per_run, "results": results},
        verdicts=verdicts,
    )
