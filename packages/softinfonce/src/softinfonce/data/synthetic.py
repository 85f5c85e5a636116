"""Embedded default data: real short mp4 clips (mpeg4 video + AAC audio) written with PyAV.

Each class ties a motion frequency (a bright vertical bar swinging left and right) to a tone
frequency; the tone's loudness follows the bar's position, so a clip's phase and amplitude are
visible in both modalities. A clip recorded at playback speed ``s`` has both frequencies scaled
by ``s``, which is what speed co-augmentation imitates. Files follow the Kinetics/AVID layout
``<root>/<split>/<class>/<id>_<start6>_<end6>.mp4`` plus ``<root>/<split>/meta.csv``.
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
    "SyntheticClip",
    "SyntheticSpec",
    "class_frequencies",
    "render_clip",
    "write_clip",
    "generate_split",
    "read_meta",
]

logger = logging.getLogger(__name__)

META_FIELDS = ("path", "label", "speed", "phase", "amplitude")


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes of the generated clips (tiny by default so tests and the demo stay fast)."""

    num_classes: int = 4
    duration: float = 4.5
    fps: int = 30
    size: int = 32
    sample_rate: int = 8000
    base_motion_hz: float = 0.35
    motion_step_hz: float = 0.2
    base_tone_hz: float = 220.0
    tone_ratio: float = 1.35

    def __post_init__(self) -> None:
        if self.size % 2 or self.size < 16:
            raise ValueError(
                f"size must be even and >= 16 (mpeg4 needs even sizes), got {self.size}"
            )
        if self.num_classes < 1 or self.duration <= 0 or self.fps < 1:
            raise ValueError("num_classes, duration and fps must be positive")


@dataclass(frozen=True)
class SyntheticClip:
    """One clip's parameters; ``speed`` scales both the motion and the tone."""

    index: int
    label: int
    speed: float
    phase: float
    amplitude: float


def class_frequencies(spec: SyntheticSpec, label: int) -> tuple[float, float]:
    """(motion Hz, tone Hz) of class ``label`` at speed 1."""
    motion = spec.base_motion_hz + spec.motion_step_hz * label
    tone = spec.base_tone_hz * spec.tone_ratio**label
    return motion, tone


def render_clip(spec: SyntheticSpec, clip: SyntheticClip) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 ``(N, size, size, 3)`` and mono audio float32 ``(S,)`` of ``clip``."""
    motion_hz, tone_hz = class_frequencies(spec, clip.label)
    motion_hz, tone_hz = motion_hz * clip.speed, tone_hz * clip.speed
    num_frames = int(round(spec.duration * spec.fps))
    t_video = np.arange(num_frames) / spec.fps
    swing = np.sin(2 * math.pi * motion_hz * t_video + clip.phase)
    centres = (0.5 + 0.32 * swing) * (spec.size - 1)
    columns = np.arange(spec.size)
    bar = np.exp(-0.5 * ((columns[None, :] - centres[:, None]) / (spec.size / 14)) ** 2)
    brightness = 40 + 200 * clip.amplitude * bar  # (N, W)
    frames = np.repeat(brightness[:, None, :], spec.size, axis=1)
    colour = np.array([1.0, 0.85, 0.6])
    frames = np.clip(frames[..., None] * colour, 0, 255).astype(np.uint8)

    num_samples = int(round(spec.duration * spec.sample_rate))
    t_audio = np.arange(num_samples) / spec.sample_rate
    envelope = 0.55 + 0.45 * np.sin(2 * math.pi * motion_hz * t_audio + clip.phase)
    audio = 0.6 * clip.amplitude * envelope * np.sin(2 * math.pi * tone_hz * t_audio)
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
    seed: int, split: str, index: int, num_classes: int, speeds: Sequence[float]
) -> SyntheticClip:
    split_code = sum(ord(c) * 31**i for i, c in enumerate(split)) % 100_003
    rng = np.random.default_rng([seed, split_code, index])
    return SyntheticClip(
        index=index,
        label=index % num_classes,
        speed=float(speeds[int(rng.integers(len(speeds)))]),
        phase=float(rng.uniform(0, 2 * math.pi)),
        amplitude=float(rng.uniform(0.45, 1.0)),
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
    clips = [_clip_params(seed, split, i, spec.num_classes, speeds) for i in range(num_clips)]
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
