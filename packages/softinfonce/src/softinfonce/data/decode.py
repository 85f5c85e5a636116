"""Decoding: video frames with decord (clamped indices) or PyAV, audio with PyAV.

decord is the fast path for video only; its audio readers leak, and it can hang (holding the GIL)
when asked for an index past the real end of a file whose container over-states its frame count.
So every index given to decord is first clamped to the number of frames that actually demux
(:func:`probe_video`, counted by PyAV, cached per file). PyAV decodes audio and is the video
fallback where decord has no wheel.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from softinfonce.config import VideoBackend

__all__ = [
    "DecodeError",
    "MissingAudioError",
    "VideoInfo",
    "VideoBackend",
    "available_video_backends",
    "resolve_video_backend",
    "probe_video",
    "read_frames",
    "read_audio",
]

logger = logging.getLogger(__name__)

# decord skips (decodes without converting) gaps of up to this many frames instead of seeking;
# tuned on 25 fps mpeg4 (GOP 12) and H.264 (GOP 15-250) clips, benchmarks/bench_loader.py.
DECORD_SEEK_FRAMES = 16


class DecodeError(ValueError):
    """A file that cannot be opened or decoded (corrupt, truncated, no video stream)."""


class MissingAudioError(DecodeError):
    """The file has no audio stream (use ``missing_audio="zeros"`` to get silence and a flag)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a file really holds. ``num_frames`` counts demuxed video packets, not the header."""

    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    has_audio: bool
    audio_rate: int | None

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def _open_av(path: str | Path):  # noqa: ANN202 (av types are untyped)
    import av
    from av.error import FFmpegError

    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        return av.open(path, metadata_errors="ignore")
    except (FFmpegError, UnicodeDecodeError) as err:
        raise DecodeError(f"cannot open {path} (corrupt or not a media file): {err}") from err


@functools.lru_cache(maxsize=4096)
def _probe_cached(path: str, mtime_ns: int, size: int) -> VideoInfo:
    from av.error import FFmpegError

    with _open_av(path) as container:
        if not container.streams.video:
            raise DecodeError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise DecodeError(f"{path}: cannot tell the video frame rate")
        audio = container.streams.audio[0] if container.streams.audio else None
        count = 0
        try:
            for packet in container.demux(stream):
                if packet.size > 0:
                    count += 1
        except FFmpegError as err:
            raise DecodeError(
                f"{path} is corrupt (demux failed after {count} frames): {err}"
            ) from err
        if count == 0:
            raise DecodeError(f"{path} has a video stream with no decodable frames")
        return VideoInfo(
            path=path,
            fps=float(rate),
            num_frames=count,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            has_audio=audio is not None,
            audio_rate=int(audio.rate) if audio is not None else None,
        )


def probe_video(path: str | Path) -> VideoInfo:
    """Frame rate, real frame count (demuxed packets), size and audio presence of ``path``."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")
    stat = os.stat(path)
    return _probe_cached(path, stat.st_mtime_ns, stat.st_size)


def _has_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def available_video_backends() -> list[str]:
    """Backends that import here, fastest first."""
    return (["decord"] if _has_decord() else []) + ["pyav"]


def resolve_video_backend(backend: VideoBackend) -> str:
    """``"auto"`` -> decord when installed, else PyAV; an explicit but missing backend raises."""
    if backend == "auto":
        return available_video_backends()[0]
    if backend == "decord" and not _has_decord():
        raise ImportError(
            "decord is not installed (it has wheels for Linux x86-64 and Windows only)"
        )
    if backend not in ("decord", "pyav"):
        raise ValueError(f"video backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
    return backend


def _clamp_indices(indices: Sequence[int], info: VideoInfo) -> list[int]:
    return [min(max(int(i), 0), info.num_frames - 1) for i in indices]


def read_frames(
    path: str | Path,
    indices: Sequence[int],
    *,
    size: tuple[int, int] | None = None,
    backend: VideoBackend = "auto",
) -> torch.Tensor:
    """Decode the frames at ``indices`` (clamped to the decodable range).

    Returns uint8 ``(len(indices), H, W, 3)``; ``size=(H, W)`` resizes while decoding.
    """
    if len(indices) == 0:
        raise ValueError("read_frames needs at least one frame index")
    info = probe_video(path)
    safe = _clamp_indices(indices, info)
    name = resolve_video_backend(backend)
    frames = _read_decord(info, safe, size) if name == "decord" else _read_pyav(info, safe, size)
    return torch.from_numpy(np.ascontiguousarray(frames))


def _read_decord(info: VideoInfo, indices: list[int], size: tuple[int, int] | None) -> np.ndarray:
    """decord fast path. decord 0.6 fails (an error, not a hang) on some frame widths when it
    converts or resizes; then this decodes at the native size and resizes, or falls back to PyAV."""
    import decord

    unique = sorted(set(indices))
    position = {index: row for row, index in enumerate(unique)}
    attempts = [size, None] if size is not None else [None]
    for attempt in attempts:
        height, width = attempt if attempt is not None else (-1, -1)
        try:
            reader = decord.VideoReader(
                info.path, ctx=decord.cpu(0), width=width, height=height, num_threads=1
            )
            batch = _walk_decord(reader, unique)
            expected = attempt if attempt is not None else (info.height, info.width)
            if batch.shape[1:] != (*expected, 3):
                # decord 0.6 returns mis-strided frames for some widths (the same cause as the
                # copy error below): treat it as a failed conversion.
                logger.debug("decord gave %s frames for %s", batch.shape[1:], info.path)
                continue
        except decord.DECORDError as err:
            if "DECORDArrayCopyFromTo" not in str(err):
                raise DecodeError(f"decord cannot decode {info.path}: {err}") from err
            logger.debug("decord cannot convert %s at size %s; retrying", info.path, attempt)
            continue
        except StopIteration as err:
            raise DecodeError(f"decord ran out of frames in {info.path}") from err
        if size is not None and attempt is None:
            batch = _resize(batch, size)
        return batch[[position[i] for i in indices]]
    logger.debug("decord cannot convert %s; using PyAV", info.path)
    return _read_pyav(info, indices, size)


def _walk_decord(reader, unique: list[int]) -> np.ndarray:  # noqa: ANN001 (decord is untyped)
    """Decode the sorted frame indices ``unique`` in one forward pass of a fresh reader.

    decord's ``get_batch`` re-seeks (rewinding to 0 first) whenever the next index lies past a
    keyframe, and every seek restarts its decoder thread: about as costly as decoding a dozen
    frames. Here gaps of at most ``DECORD_SEEK_FRAMES`` are skipped without seeking (frames are
    decoded but not converted; a keyframe on the way is stepped over with ``next``); longer gaps
    go through ``skip_frames``, which seeks once to the keyframe before the target.
    """
    keys = reader.get_key_indices()
    frames = []
    current = 0  # the frame the reader returns next
    for target in unique:
        if target - current > DECORD_SEEK_FRAMES:
            reader.skip_frames(target - current)
            current = target
        while current < target:
            following = bisect.bisect_right(keys, current)
            key = keys[following] if following < len(keys) else None
            if key is None or key > target:
                reader.skip_frames(target - current)
                current = target
            else:
                # skip_frames seeks whenever it lands on or past a keyframe: stop one short
                # and step over the keyframe boundary with next() instead.
                if key - 1 > current:
                    reader.skip_frames(key - 1 - current)
                reader.next()
                current = key
        frames.append(reader.next().asnumpy())
        current += 1
    return np.stack(frames)


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    video = torch.nn.functional.interpolate(
        video, size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return video.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


PYAV_SEEK_SECONDS = 2.0  # seek (then decode forward) when the first wanted frame is this late


def _read_pyav(info: VideoInfo, indices: list[int], size: tuple[int, int] | None) -> np.ndarray:
    """PyAV: seek to the keyframe before the first wanted frame, decode forward, convert only the
    wanted frames. Frame positions come from timestamps (from the decode order without them)."""
    from av.error import FFmpegError

    wanted = set(indices)
    first, last = min(wanted), max(wanted)
    found: dict[int, np.ndarray] = {}
    height, width = size if size is not None else (info.height, info.width)
    with _open_av(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = float(stream.time_base) if stream.time_base else None
        origin = stream.start_time or 0
        use_pts = time_base is not None and first / info.fps >= PYAV_SEEK_SECONDS
        if use_pts and time_base is not None:
            container.seek(int(origin + first / info.fps / time_base), stream=stream, backward=True)
        try:
            for count, frame in enumerate(container.decode(stream)):
                if use_pts and frame.pts is not None:
                    position = int(round((frame.pts - origin) * time_base * info.fps))
                else:
                    position = count
                if position in wanted and position not in found:
                    found[position] = frame.to_ndarray(format="rgb24", width=width, height=height)
                if position >= last:
                    break
        except FFmpegError as err:
            raise DecodeError(f"PyAV cannot decode {info.path}: {err}") from err
    if not found:
        raise DecodeError(f"{info.path}: no frame decoded")
    # A frame that demuxed but did not decode falls back to the nearest earlier decoded one.
    decoded = sorted(found)
    out = []
    for index in indices:
        earlier = [d for d in decoded if d <= index]
        out.append(found[earlier[-1] if earlier else decoded[0]])
    return np.stack(out)


def read_audio(
    path: str | Path,
    sample_rate: int,
    *,
    missing_audio: Literal["error", "zeros"] = "error",
    min_samples: int = 0,
) -> tuple[torch.Tensor, bool]:
    """Decode the whole audio track as mono float32 at ``sample_rate`` with PyAV.

    Returns ``(waveform (1, S), is_missing)``. Without an audio stream this raises
    :class:`MissingAudioError`, or with ``missing_audio="zeros"`` returns ``min_samples`` zeros
    and ``is_missing=True``.
    """
    import av
    from av.error import FFmpegError

    if missing_audio not in ("error", "zeros"):
        raise ValueError(f"missing_audio must be 'error' or 'zeros', got {missing_audio!r}")
    with _open_av(path) as container:
        if not container.streams.audio:
            if missing_audio == "zeros":
                return torch.zeros(1, max(min_samples, 1)), True
            raise MissingAudioError(
                f"{path} has no audio stream (pass missing_audio='zeros' to use silence)"
            )
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except FFmpegError as err:
            raise DecodeError(f"PyAV cannot decode the audio of {path}: {err}") from err
    if not chunks:
        if missing_audio == "zeros":
            return torch.zeros(1, max(min_samples, 1)), True
        raise MissingAudioError(f"{path} has an audio stream with no decodable samples")
    return torch.from_numpy(np.concatenate(chunks)).float().unsqueeze(0), False
