"""Speed co-augmentation: one playback speed applied to both modalities of a clip.

For a view at speed ``s`` the video takes ``T`` frames with temporal stride ``s`` at the base rate
``F`` (``idx_k = round(t0*fps + s*k*fps/F)``) and the audio window ``[t0, t0 + s*D)`` is resampled
into ``D`` seconds, so the pitch scales by ``s`` (a sped-up cat sounds like a mouse). A clip gives
two views, the original (speed 1) and a sped-up one, sharing the start time ``t0``.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torchaudio
import torchaudio.functional as AF
from torch import nn

from softinfonce.config import CoAugConfig

__all__ = [
    "CoAugConfig",
    "ViewPlan",
    "sample_speed",
    "video_indices",
    "fit_length",
    "speed_audio",
    "cut_audio",
    "plan_views",
    "SpatialAugment",
    "EvalTransform",
]


@dataclass(frozen=True)
class ViewPlan:
    """Where one view reads: its speed, start time (s) and source frame indices."""

    speed: float
    start: float
    frame_indices: tuple[int, ...]


def sample_speed(rng: random.Random, choices: Sequence[float] = (2.0, 3.0, 4.0)) -> float:
    """One speed drawn uniformly from ``choices``."""
    if not choices:
        raise ValueError("choices must not be empty")
    return float(choices[rng.randrange(len(choices))])


def video_indices(
    start: float,
    speed: float,
    source_fps: float,
    num_decodable: int,
    *,
    num_frames: int = 8,
    frame_rate: float = 16.0,
    overflow: Literal["clamp", "loop"] = "clamp",
) -> list[int]:
    """``idx_k = round(t0*fps + s*k*fps/F)``, k < T, kept inside ``[0, num_decodable)``.

    ``clamp`` moves the start back so the whole window fits, then clamps; ``loop`` wraps.
    """
    if num_decodable < 1:
        raise ValueError(f"num_decodable must be >= 1, got {num_decodable}")
    step = speed * source_fps / frame_rate
    first = start * source_fps
    if overflow == "clamp":
        last = first + step * (num_frames - 1)
        if round(last) > num_decodable - 1:
            first = max(0.0, first - (round(last) - (num_decodable - 1)))
        return [
            min(max(int(round(first + step * k)), 0), num_decodable - 1) for k in range(num_frames)
        ]
    if overflow == "loop":
        return [int(round(first + step * k)) % num_decodable for k in range(num_frames)]
    raise ValueError(f"overflow must be 'clamp' or 'loop', got {overflow!r}")


def fit_length(waveform: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Trim or zero-pad the last axis to exactly ``num_samples``."""
    length = waveform.shape[-1]
    if length >= num_samples:
        return waveform[..., :num_samples]
    return torch.nn.functional.pad(waveform, (0, num_samples - length))


@functools.lru_cache(maxsize=64)
def _resampler(
    speed: float, sample_rate: int, dtype: torch.dtype, device: torch.device
) -> torchaudio.transforms.Resample:
    """``Resample(s*sr -> sr)`` with its sinc kernel built once per dtype and device (same as
    ``functional.speed``); the kernel is computed in float64 and then cast."""
    source = int(round(speed * sample_rate))
    divisor = math.gcd(source, sample_rate)
    module = torchaudio.transforms.Resample(
        source // divisor, sample_rate // divisor, dtype=torch.float64
    )
    return module.to(device=device, dtype=dtype)


def speed_audio(
    window: torch.Tensor,
    sample_rate: int,
    speed: float,
    num_samples: int,
    mode: Literal["resample", "time_stretch"] = "resample",
) -> torch.Tensor:
    """Play ``window (..., s*D*sr)`` ``speed`` times faster into exactly ``num_samples`` samples.

    ``resample`` equals ``torchaudio.functional.speed`` (Hann sinc, width 6, rolloff 0.99): pitch
    scales by ``speed``. ``time_stretch`` (phase vocoder) keeps the pitch, as an ablation. The
    output has the dtype and device of ``window`` (float16/bfloat16 windows are stretched in
    float32, which the STFT needs, and cast back).
    """
    if not window.is_floating_point():
        raise TypeError(f"window must be a floating-point tensor, got {window.dtype}")
    if speed == 1.0:
        return fit_length(window, num_samples)
    if mode == "resample":
        out = _resampler(float(speed), int(sample_rate), window.dtype, window.device)(window)
    elif mode == "time_stretch":
        work = window.float() if window.dtype in (torch.float16, torch.bfloat16) else window
        n_fft, hop = 512, 128
        window_fn = torch.hann_window(n_fft, device=work.device, dtype=work.dtype)
        spec = torch.stft(work, n_fft, hop, window=window_fn, return_complex=True)
        advance = torch.linspace(
            0, math.pi * hop, spec.shape[-2], device=work.device, dtype=work.dtype
        )[..., None]
        stretched = AF.phase_vocoder(spec, speed, advance)
        length = int(round(work.shape[-1] / speed))
        out = torch.istft(stretched, n_fft, hop, window=window_fn, length=length).to(window.dtype)
    else:
        raise ValueError(f"mode must be 'resample' or 'time_stretch', got {mode!r}")
    return fit_length(out, num_samples)


def cut_audio(
    waveform: torch.Tensor,
    sample_rate: int,
    start: float,
    speed: float,
    duration: float,
    mode: Literal["resample", "time_stretch"] = "resample",
) -> torch.Tensor:
    """Samples ``[t0, t0 + s*D)`` of ``waveform (C, S)`` sped up into exactly ``D*sr`` samples
    (any floating dtype; the output keeps the dtype and device of ``waveform``)."""
    num_samples = int(round(duration * sample_rate))
    first = int(round(start * sample_rate))
    count = int(round(speed * duration * sample_rate))
    window = fit_length(waveform[..., first : first + count], count)
    return speed_audio(window, sample_rate, speed, num_samples, mode)


def plan_views(
    config: CoAugConfig,
    source_fps: float,
    num_decodable: int,
    speeds: Sequence[float],
    rng: random.Random,
    centred: bool = False,
) -> list[ViewPlan]:
    """Start times and frame indices of the views at ``speeds`` (t0 or centre shared).

    ``t0`` is drawn so the longest view fits; ``centred=True`` puts it in the middle instead.
    """
    duration = num_decodable / source_fps
    longest = max(speeds) * config.span
    room = max(0.0, duration - longest)
    shared = room / 2 if centred else rng.uniform(0.0, room)
    plans = []
    for speed in speeds:
        if config.align == "start":
            start = shared
        else:
            start = max(0.0, shared + (longest - speed * config.span) / 2)
        if config.overflow == "clamp":
            start = max(0.0, min(start, duration - speed * config.span))
        indices = video_indices(
            start,
            speed,
            source_fps,
            num_decodable,
            num_frames=config.num_frames,
            frame_rate=config.frame_rate,
            overflow=config.overflow,
        )
        plans.append(ViewPlan(speed=float(speed), start=start, frame_indices=tuple(indices)))
    return plans


class SpatialAugment(nn.Module):
    """One random crop/flip/colour jitter for all frames of a view, then normalisation.

    ``frames: (T, H, W, 3) uint8 -> (3, T, crop, crop) float``.
    """

    def __init__(self, config: CoAugConfig) -> None:
        super().__init__()
        from torchvision.transforms import v2

        steps: list[nn.Module] = [
            v2.RandomResizedCrop(config.crop_size, scale=config.crop_scale, antialias=True)
        ]
        if config.flip_prob > 0:
            steps.append(v2.RandomHorizontalFlip(config.flip_prob))
        if any(config.color_jitter):
            steps.append(v2.ColorJitter(*config.color_jitter))
        steps.append(v2.Normalize(config.mean, config.std))
        self.transform = v2.Compose(steps)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        video = frames.permute(0, 3, 1, 2).float().div_(255)
        return self.transform(video).permute(1, 0, 2, 3).contiguous()


class EvalTransform(nn.Module):
    """Resize the short side to ``crop/0.875`` then centre-crop; ``(T,H,W,3) -> (3,T,crop,crop)``."""

    def __init__(self, config: CoAugConfig) -> None:
        super().__init__()
        from torchvision.transforms import v2

        self.transform = v2.Compose(
            [
                v2.Resize(int(round(config.crop_size / 0.875)), antialias=True),
                v2.CenterCrop(config.crop_size),
                v2.Normalize(config.mean, config.std),
            ]
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        video = frames.permute(0, 3, 1, 2).float().div_(255)
        return self.transform(video).permute(1, 0, 2, 3).contiguous()
