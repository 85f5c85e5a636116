"""Embedded default data: real short mp4 clips (mpeg4 video + AAC audio) written with PyAV.

The clips are built so that, as in real video, a class survives a change of playback speed while
the speed itself stays visible. A class is an *identity* (the colour and shape of a moving object,
and the timbre of its sound: the ratios between its harmonics) at one of two *rates* (a slow and a
fast version of the same identity, like walking and running). The object swings left and right at
the clip's rate and the sound pulses in loudness in step with it, so phase, rate and loudness are
shared by both modalities. A clip recorded at playback speed ``s`` has its rate and pitch scaled by
``s`` (what speed co-augmentation imitates); colour, shape and harmonic ratios do not change.
Files follow the Kinetics/AVID layout ``<root>/<split>/<class>/<id>_<start6>_<end6>.mp4`` plus
``<root>/<split>/meta.csv``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from papers_shared.sharding import take_shard

__all__ = [
    "IDENTITIES",
    "Identity",
    "SyntheticClip",
    "SyntheticSpec",
    "class_identity",
    "class_rate",
    "render_clip",
    "write_clip",
    "generate_split",
    "read_meta",
]

logger = logging.getLogger(__name__)

META_FIELDS = ("path", "label", "speed", "phase", "amplitude", "rate_scale", "pitch_hz", "row")


@dataclass(frozen=True)
class Identity:
    """What a class looks and sounds like, independently of its rate.

    ``colour`` (RGB 0-255) and ``shape`` of the moving object; ``harmonics`` are the relative
    amplitudes of harmonics 1, 2, ... of the sound (its timbre). Playing a clip faster scales every
    frequency by the same factor, so colour, shape and harmonic ratios survive a speed change.
    """

    name: str
    colour: tuple[int, int, int]
    shape: str
    harmonics: tuple[float, ...]


IDENTITIES: tuple[Identity, ...] = (
    Identity("red-disc-pure", (230, 50, 40), "disc", (1.0,)),
    Identity("green-square-odd", (40, 200, 70), "square", (1.0, 0.0, 0.5, 0.0, 0.33, 0.0, 0.25)),
    Identity(
        "blue-ring-bright", (60, 90, 240), "ring", (1.0, 0.7, 0.55, 0.45, 0.38, 0.32, 0.28, 0.25)
    ),
    Identity("yellow-cross-even", (230, 210, 40), "cross", (0.35, 1.0, 0.1, 0.8, 0.0, 0.5)),
)


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and rates of the generated clips (tiny by default so tests and the demo stay fast).

    Class ``k`` is identity ``k // 2`` (colour, shape, timbre: :data:`IDENTITIES`) at rate tier
    ``k % 2``: a slow version (``base_rate_hz``, "walk") and a fast one (``fast_ratio`` times
    faster, "run") that differ only in rate. Each clip draws its own rate jitter, motion phase,
    loudness/brightness, pitch and height, so several clips of one class differ as instances.
    """

    num_classes: int = 4
    duration: float = 4.5
    fps: int = 30
    size: int = 32
    sample_rate: int = 8000
    base_rate_hz: float = 0.35
    fast_ratio: float = 1.8
    rate_jitter: float = 0.12
    pitch_range_hz: tuple[float, float] = (100.0, 160.0)
    object_radius: float = 5.0

    def __post_init__(self) -> None:
        if self.size % 2 or self.size < 16:
            raise ValueError(
                f"size must be even and >= 16 (mpeg4 needs even sizes), got {self.size}"
            )
        if not 1 <= self.num_classes <= 2 * len(IDENTITIES):
            raise ValueError(
                f"num_classes must be in [1, {2 * len(IDENTITIES)}] "
                f"({len(IDENTITIES)} identities x 2 rates), got {self.num_classes}"
            )
        if self.duration <= 0 or self.fps < 1 or self.sample_rate < 1:
            raise ValueError("duration, fps and sample_rate must be positive")
        if self.base_rate_hz <= 0 or self.fast_ratio <= 1 or not 0 <= self.rate_jitter < 1:
            raise ValueError(
                "base_rate_hz must be > 0, fast_ratio > 1 and rate_jitter in [0, 1), got "
                f"{self.base_rate_hz}, {self.fast_ratio}, {self.rate_jitter}"
            )
        low, high = self.pitch_range_hz
        if not 0 < low <= high < self.sample_rate / 2:
            raise ValueError(f"pitch_range_hz must lie in (0, sr/2), got {self.pitch_range_hz}")


@dataclass(frozen=True)
class SyntheticClip:
    """One clip's parameters; ``speed`` is the playback speed it is recorded at.

    ``rate_scale`` multiplies the class rate (natural variation), ``pitch_hz`` is the fundamental
    at speed 1, ``row`` the object's height (fraction of the frame).
    """

    index: int
    label: int
    speed: float
    phase: float
    amplitude: float
    rate_scale: float = 1.0
    pitch_hz: float = 130.0
    row: float = 0.5


def class_identity(label: int) -> Identity:
    """Colour, shape and timbre of class ``label`` (shared by its slow and fast version)."""
    return IDENTITIES[(label // 2) % len(IDENTITIES)]


def class_rate(spec: SyntheticSpec, label: int) -> float:
    """Motion / loudness-pulse rate (Hz) of class ``label`` at speed 1, before jitter."""
    return spec.base_rate_hz * (spec.fast_ratio if label % 2 else 1.0)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Soft (anti-aliased) mask in [0, 1] of ``shape`` centred at offset 0."""
    edge = lambda signed: 1.0 / (1.0 + np.exp(-2.5 * signed))  # noqa: E731
    if shape == "disc":
        return edge(radius - np.hypot(dx, dy))
    if shape == "square":
        return edge(0.85 * radius - np.maximum(np.abs(dx), np.abs(dy)))
    if shape == "ring":
        return edge(0.35 * radius - np.abs(np.hypot(dx, dy) - 0.7 * radius))
    if shape == "cross":
        bar_h = np.minimum(radius - np.abs(dx), 0.35 * radius - np.abs(dy))
        bar_v = np.minimum(radius - np.abs(dy), 0.35 * radius - np.abs(dx))
        return edge(np.maximum(bar_h, bar_v))
    raise ValueError(f"unknown shape {shape!r}")


def render_clip(spec: SyntheticSpec, clip: SyntheticClip) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 ``(N, size, size, 3)`` and mono audio float32 ``(S,)`` of ``clip``.

    Video: the class's object swings left and right at the clip's rate on a dark background.
    Audio: the class's harmonic tone, pulsing in loudness in step with the swing. Brightness and
    loudness follow ``amplitude``. Recording at speed ``s`` multiplies the rate and the pitch by ``s``
    and leaves colour, shape and the harmonic ratios as they are.
    """
    identity = class_identity(clip.label)
    rate = class_rate(spec, clip.label) * clip.rate_scale * clip.speed
    num_frames = int(round(spec.duration * spec.fps))
    t_video = np.arange(num_frames) / spec.fps
    swing = np.sin(2 * math.pi * rate * t_video + clip.phase)
    centres = (0.5 + 0.3 * swing) * (spec.size - 1)  # (N,)
    grid = np.arange(spec.size, dtype=np.float64)
    dx = grid[None, None, :] - centres[:, None, None]  # (N, 1, W)
    dy = grid[None, :, None] - clip.row * (spec.size - 1)  # (1, H, 1)
    mask = _shape_mask(identity.shape, dx, dy, spec.object_radius)  # (N, H, W)
    colour = np.asarray(identity.colour, dtype=np.float64) * (0.45 + 0.55 * clip.amplitude)
    background = np.array([28.0, 28.0, 32.0])
    frames = background + mask[..., None] * (colour - background)
    frames = np.clip(frames, 0, 255).astype(np.uint8)

    num_samples = int(round(spec.duration * spec.sample_rate))
    t_audio = np.arange(num_samples) / spec.sample_rate
    pulse = 0.15 + 0.85 * ((1 + np.sin(2 * math.pi * rate * t_audio + clip.phase)) / 2) ** 2
    pitch = clip.pitch_hz * clip.speed
    tone = np.zeros(num_samples)
    for order, weight in enumerate(identity.harmonics, start=1):
        if weight and order * pitch < spec.sample_rate / 2:
            tone += weight * np.sin(2 * math.pi * order * pitch * t_audio)
    tone /= max(sum(abs(w) for w in identity.harmonics), 1e-9)
    audio = 0.8 * clip.amplitude * pulse * tone
    return frames, audio.astype(np.float32)


def write_clip(
    path: str | Path, frames: np.ndarray, audio: np.ndarray | None, fps: int, sample_rate: int
) -> Path:
    """Write ``frames`` (N, H, W, 3) uint8 and optional mono ``audio`` (S,) as an mp4 (atomic)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.bit_rate = 2_000_000
        sound = None
        if audio is not None:
            sound = container.add_stream(
                "aac", rate=sample_rate, layout="mono", options={"aac_coder": "fast"}
            )
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None and audio is not None:
            chunk = 1024
            for start in range(0, len(audio), chunk):
                piece = audio[None, start : start + chunk].astype(np.float32)
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    os.replace(tmp, path)
    return path


def _clip_params(
    seed: int, split: str, index: int, spec: SyntheticSpec, speeds: Sequence[float]
) -> SyntheticClip:
    split_code = sum(ord(c) * 31**i for i, c in enumerate(split)) % 100_003
    rng = np.random.default_rng([seed, split_code, index])
    return SyntheticClip(
        index=index,
        label=index % spec.num_classes,
        speed=float(speeds[int(rng.integers(len(speeds)))]),
        phase=float(rng.uniform(0, 2 * math.pi)),
        amplitude=float(rng.uniform(0.45, 1.0)),
        rate_scale=float(rng.uniform(1 - spec.rate_jitter, 1 + spec.rate_jitter)),
        pitch_hz=float(rng.uniform(*spec.pitch_range_hz)),
        row=float(rng.uniform(0.3, 0.7)),
    )


def _clip_path(root: Path, split: str, clip: SyntheticClip, duration: float) -> Path:
    end = int(math.ceil(duration))
    return root / split / f"class_{clip.label:02d}" / f"synth{clip.index:05d}_000000_{end:06d}.mp4"


def generate_split(
    root: str | Path,
    split: str,
    num_clips: int,
    *,
    spec: SyntheticSpec | None = None,
    speeds: Sequence[float] = (1.0,),
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    callback: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write ``num_clips`` clips of ``split`` (resumable: existing files are kept).

    ``shard=(i, n)`` writes only every n-th clip from i; after all shards ran, any one of them
    (or a plain call) writes ``meta.csv``. Clip parameters depend only on (seed, split, index),
    so shards agree. Returns the paths of this shard's clips.
    """
    spec = spec or SyntheticSpec()
    root = Path(root)
    clips = [_clip_params(seed, split, i, spec, speeds) for i in range(num_clips)]
    written = []
    for clip in take_shard(clips, *shard):
        path = _clip_path(root, split, clip, spec.duration)
        if not path.exists():
            frames, audio = render_clip(spec, clip)
            write_clip(path, frames, audio, spec.fps, spec.sample_rate)
        written.append(path)
        if callback is not None:
            callback(1)
    if all(_clip_path(root, split, c, spec.duration).exists() for c in clips):
        _write_meta(root / split / "meta.csv", root / split, clips, spec)
    return written


def _write_meta(
    path: Path, split_dir: Path, clips: list[SyntheticClip], spec: SyntheticSpec
) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(META_FIELDS)
        for clip in clips:
            rel = _clip_path(split_dir.parent, split_dir.name, clip, spec.duration).relative_to(
                split_dir
            )
            writer.writerow(
                [
                    rel.as_posix(),
                    clip.label,
                    clip.speed,
                    f"{clip.phase:.6f}",
                    f"{clip.amplitude:.6f}",
                    f"{clip.rate_scale:.6f}",
                    f"{clip.pitch_hz:.3f}",
                    f"{clip.row:.6f}",
                ]
            )
    os.replace(tmp, path)


def read_meta(split_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``<split_dir>/meta.csv`` (path relative to ``split_dir``, label, speed, ...)."""
    path = Path(split_dir) / "meta.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; write it with `softinfonce generate`")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
