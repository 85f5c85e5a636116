"""Typed configs of a pre-training run: the encoders (:class:`ModelConfig`) and everything
specific to the paper's pre-training (:class:`PretrainConfig`).

How long and how a run is trained (epochs, steps, precision, seed, device, run folder) is the
shared trainer's :class:`papers_shared.trainer.TrainerConfig`; both are saved in the run's
``config.json`` (``{"trainer": ..., "task": ...}``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

WeightMode = Literal["feature", "ratio", "const", "zero"]
WEIGHT_MODES: tuple[str, ...] = ("feature", "ratio", "const", "zero")
VideoBackend = Literal["auto", "decord", "pyav"]

__all__ = ["CoAugConfig", "ModelConfig", "PretrainConfig", "WEIGHT_MODES", "WeightMode"]

logger = logging.getLogger(__name__)

# Fields of configs written before training moved to the shared trainer; they now live in
# TrainerConfig and are ignored (with a log line) when an old config.json is read.
_TRAINER_FIELDS = ("epochs", "max_steps", "precision", "mixed_precision", "seed", "log_every")


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class CoAugConfig:
    """Settings of speed co-augmentation; defaults follow AVID where the paper is silent."""

    num_frames: int = 8  # T, frames per view
    frame_rate: float = 16.0  # F, base frames per second
    audio_duration: float = 2.0  # D seconds
    sample_rate: int = 24_000  # (AVID)
    speeds: tuple[float, ...] = (2.0, 3.0, 4.0)  # augmented speeds, uniform
    speed_sampling: Literal["per_sample", "per_batch"] = "per_sample"
    overflow: Literal["clamp", "loop"] = "clamp"
    align: Literal["start", "centre"] = "start"
    audio_mode: Literal["resample", "time_stretch"] = "resample"
    use_augmented_view: bool = True  # False: one speed-1 view per clip (vanilla AV InfoNCE)
    crop_size: int = 112
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip_prob: float = 0.5
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.2)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    volume_jitter: tuple[float, float] = (0.9, 1.1)
    n_fft: int = 1024
    missing_audio: Literal["error", "zeros"] = "error"
    decode_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if (
            self.num_frames < 1
            or self.frame_rate <= 0
            or self.audio_duration <= 0
            or self.sample_rate < 1
        ):
            raise ValueError(
                "num_frames, frame_rate, audio_duration and sample_rate must be positive"
            )
        if not self.speeds or any(s <= 0 for s in self.speeds):
            raise ValueError(
                f"speeds must be a non-empty tuple of positive numbers, got {self.speeds}"
            )
        for name, value, allowed in (
            ("speed_sampling", self.speed_sampling, ("per_sample", "per_batch")),
            ("overflow", self.overflow, ("clamp", "loop")),
            ("align", self.align, ("start", "centre")),
            ("audio_mode", self.audio_mode, ("resample", "time_stretch")),
            ("missing_audio", self.missing_audio, ("error", "zeros")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")

    @property
    def num_samples(self) -> int:
        """Audio samples per view, ``D * sr``."""
        return int(round(self.audio_duration * self.sample_rate))

    @property
    def span(self) -> float:
        """Seconds one speed-1 view covers (the longer of the video and audio windows)."""
        return max(self.num_frames / self.frame_rate, self.audio_duration)

    @property
    def view_speeds(self) -> int:
        return 2 if self.use_augmented_view else 1


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """``cls(**data)`` with lists turned into tuples; unknown keys raise ``ValueError``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class ModelConfig:
    """Encoder sizes; the defaults are AVID's R(2+1)D-18 + Conv2D-10 + 512-512-128 heads.

    ``arch="mlp"`` swaps both backbones for tiny 2-layer MLPs (CPU demos and tests). With
    ``arch="avid"``, ``audio_arch="resnet18"`` / ``video_arch="torchvision"`` swap in the optional
    torchvision nets (:mod:`softinfonce.models.torchvision_nets`, imported only then).
    """

    arch: Literal["avid", "mlp"] = "avid"
    """avid: R(2+1)D + Conv2D audio net (AVID's); mlp: 2-layer MLPs for CPU demos and tests."""
    video_arch: Literal["avid", "torchvision"] = "avid"
    """With arch=avid: AVID's R(2+1)D or torchvision's r2plus1d_18."""
    audio_arch: Literal["conv2d10", "resnet18"] = "conv2d10"
    """With arch=avid: AVID's Conv2D-10 or a torchvision ResNet-18 on spectrograms."""
    mlp_hidden: int = 256
    """Hidden width of the MLP backbones (arch=mlp)."""
    mlp_features: int = 128
    """Output width of the MLP backbones (arch=mlp)."""
    video_depth: int = 18
    """R(2+1)D depth: 10, 18 or 34."""
    video_widths: tuple[int, ...] = (64, 128, 256, 512)
    """Channel widths of the four R(2+1)D stages."""
    audio_widths: tuple[int, ...] = (64, 128, 256, 512)
    """Channel widths of the four Conv2D audio blocks."""
    head_dims: tuple[int, ...] = (512, 512, 128)
    """Projection head widths (the last is the joint embedding size)."""
    use_output_bn: bool = False
    """A centring BatchNorm after each head (not AVID's; helps tiny from-scratch runs)."""

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("arch", self.arch, ("avid", "mlp")),
            ("video_arch", self.video_arch, ("avid", "torchvision")),
            ("audio_arch", self.audio_arch, ("conv2d10", "resnet18")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.mlp_hidden < 1 or self.mlp_features < 1 or not self.head_dims:
            raise ValueError("mlp_hidden, mlp_features and head_dims must be positive / non-empty")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)


@dataclass
class PretrainConfig:
    """What one pre-training run needs beside the trainer settings; saved in ``config.json``.

    Defaults follow the paper where it says (speed co-augmentation of both modalities, SoftInfoNCE
    with the partial pair kept in the softmax, Sec. 3) and AVID's Kinetics recipe where it does
    not (tau 0.07, Adam 2e-4, weight decay 1e-5, batch 256).
    """

    augment: CoAugConfig = field(default_factory=CoAugConfig)
    """Speed co-augmentation and input sizes."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Encoders and heads."""
    temperature: float = 0.07
    """Softmax temperature tau (AVID's value)."""
    learnable_temperature: bool = False
    """Learn log(1/tau), clamped to [0.01, 1]."""
    weight_mode: WeightMode = "feature"
    """Soft target of the same-clip/other-speed pair: feature (cosine of the two views of the
    candidate modality), ratio (min/max speed), const, or zero (hard targets)."""
    const_weight: float = 0.5
    """The soft target when weight_mode=const."""
    normalize_targets: bool = False
    """Divide each row's targets by their sum (SNCLR does not: label mass 1 + w)."""
    lr: float = 2e-4
    """Adam learning rate (AVID's Kinetics recipe)."""
    weight_decay: float = 1e-5
    """Adam weight decay (AVID's Kinetics recipe)."""
    batch_size: int = 256
    """Clips per step on each process (each clip gives two views, so 2x views)."""
    num_workers: int = 2
    """DataLoader worker processes."""
    backend: VideoBackend = "auto"
    """Video decoder: auto (decord when installed), decord or pyav."""
    cache_decoded: bool = False
    """Keep decoded files in memory (small data sets only)."""
    chunk_size: int | None = None
    """Views per encoder forward; None = all 2N views at once (see softinfonce.train)."""

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (negatives come from the batch), got {self.batch_size}"
            )
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(
                f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.weight_mode not in WEIGHT_MODES:
            raise ValueError(f"weight_mode must be one of {WEIGHT_MODES}, got {self.weight_mode!r}")
        if not 0.0 <= self.const_weight <= 1.0:
            raise ValueError(f"const_weight must be in [0, 1], got {self.const_weight}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {self.chunk_size}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PretrainConfig:
        """Build from a mapping (a run's ``config.json`` ``"task"`` part, or a whole older
        config). Unknown keys raise ``ValueError``; the trainer settings that older configs held
        (epochs, max_steps, precision, seed, log_every) are ignored with a log line."""
        data = dict(data)
        if set(data) == {"trainer", "task"}:
            data = dict(data["task"])
        dropped = [k for k in _TRAINER_FIELDS if k in data]
        for key in dropped:
            data.pop(key)
        if dropped:
            logger.info("ignoring trainer settings %s of an older config", dropped)
        augment = _from_dict(CoAugConfig, data.pop("augment", {}))
        model = ModelConfig.from_dict(data.pop("model", {}))
        return _from_dict(cls, {**data, "augment": augment, "model": model})
