from __future__ import annotations

import numpy as np
import pytest
import torch
from softinfonce.data.decode import (
    DecodeError,
    MissingAudioError,
    available_video_backends,
    probe_video,
    read_audio,
    read_frames,
    resolve_video_backend,
)

BACKENDS = available_video_backends()


def test_probe_counts_the_written_frames(tiny_clip) -> None:
    path, frames, _ = tiny_clip
    info = probe_video(path)
    assert info.num_frames == len(frames) == 50 and info.fps == 25 and info.has_audio


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_decode_every_frame(tiny_clip, backend: str) -> None:
    path, frames, _ = tiny_clip
    got = read_frames(path, range(len(frames)), backend=backend)  # type: ignore[arg-type]
    assert got.shape == (50, 32, 32, 3) and got.dtype == torch.uint8
    error = (got.float() - torch.from_numpy(frames).float()).abs().mean()
    assert error < 12  # lossy mpeg4 + yuv420p


def test_decord_and_pyav_agree(tiny_clip) -> None:
    if "decord" not in BACKENDS:
        pytest.skip("decord is not installed")
    path, _, _ = tiny_clip
    idx = [0, 7, 13, 49]
    a = read_frames(path, idx, backend="decord").float()
    b = read_frames(path, idx, backend="pyav").float()
    assert (a - b).abs().mean() < 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_indices_past_the_end_are_clamped(tiny_clip, backend: str) -> None:
    path, _, _ = tiny_clip
    got = read_frames(path, [48, 49, 50, 500], backend=backend)  # type: ignore[arg-type]
    last = read_frames(path, [49], backend=backend)  # type: ignore[arg-type]
    torch.testing.assert_close(got[3], last[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_resize_while_decoding(tiny_clip, backend: str) -> None:
    path, _, _ = tiny_clip
    assert read_frames(path, [0, 1], size=(16, 24), backend=backend).shape == (2, 16, 24, 3)  # type: ignore[arg-type]


def test_audio_length_agrees_with_the_input(tiny_clip) -> None:
    path, _, audio = tiny_clip
    wave, missing = read_audio(path, 16000)
    assert not missing and wave.shape[0] == 1
    assert abs(wave.shape[1] - len(audio)) <= 2048  # AAC priming and padding
    n = min(wave.shape[1], len(audio)) - 1024
    assert np.corrcoef(wave[0, :n].numpy(), audio[:n])[0, 1] > 0.95


def test_audio_resampled_on_read(tiny_clip) -> None:
    path, _, audio = tiny_clip
    wave, _ = read_audio(path, 8000)
    assert abs(wave.shape[1] - len(audio) // 2) <= 1024


def test_missing_audio_raises_or_gives_zeros(silent_clip) -> None:
    assert not probe_video(silent_clip).has_audio
    with pytest.raises(MissingAudioError, match="no audio stream"):
        read_audio(silent_clip, 8000)
    wave, missing = read_audio(silent_clip, 8000, missing_audio="zeros", min_samples=100)
    assert missing and wave.shape == (1, 100) and wave.abs().max() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_file_gives_a_clear_error(tmp_path, backend: str) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    with pytest.raises(DecodeError, match="corrupt|cannot"):
        read_frames(bad, [0], backend=backend)  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        read_audio(bad, 8000)


def test_truncated_file_never_hangs(tmp_path, tiny_clip) -> None:
    path, _, _ = tiny_clip
    data = path.read_bytes()
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 2])
    for backend in BACKENDS:
        try:
            frames = read_frames(cut, range(0, 200, 10), backend=backend)  # type: ignore[arg-type]
        except DecodeError:
            continue
        assert frames.shape[0] == 20


def test_missing_file_and_unknown_backend() -> None:
    with pytest.raises(FileNotFoundError):
        probe_video("/nonexistent/clip.mp4")
    with pytest.raises(ValueError, match="backend"):
        resolve_video_backend("opencv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        read_frames("/nonexistent/clip.mp4", [])


def test_pyav_seek_matches_sequential_decoding(tmp_path) -> None:
    from softinfonce.data.synthetic import SyntheticClip, SyntheticSpec, render_clip, write_clip

    spec = SyntheticSpec(num_classes=2, duration=6.0, fps=25, size=32, sample_rate=8000)
    frames, _ = render_clip(spec, SyntheticClip(0, 1, 1.0, 0.5, 1.0))
    path = write_clip(tmp_path / "long.mp4", frames, None, spec.fps, spec.sample_rate)
    late = [100, 101, 113, 149]  # 4 s in: the PyAV path seeks
    seeked = read_frames(path, late, backend="pyav").float()
    error = (seeked - torch.from_numpy(frames[late]).float()).abs().mean(dim=(1, 2, 3))
    wrong = (
        (seeked - torch.from_numpy(frames[[i - 3 for i in late]]).float()).abs().mean(dim=(1, 2, 3))
    )
    assert (error < 12).all() and (error < wrong).all()
    if "decord" in BACKENDS:
        assert (read_frames(path, late, backend="decord").float() - seeked).abs().mean() < 3


def test_decord_forward_walk_matches_get_batch(tmp_path) -> None:
    """The seek-avoiding walk returns exactly the frames decord's own get_batch returns."""
    decord = pytest.importorskip("decord")
    from softinfonce.data.decode import DECORD_SEEK_FRAMES
    from softinfonce.data.synthetic import SyntheticClip, SyntheticSpec, render_clip, write_clip

    spec = SyntheticSpec(num_classes=2, duration=6.0, fps=25, size=32, sample_rate=8000)
    frames, _ = render_clip(spec, SyntheticClip(0, 1, 1.0, 0.5, 1.0))
    path = write_clip(tmp_path / "long.mp4", frames, None, spec.fps, spec.sample_rate)
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    assert len(reader.get_key_indices()) > 3  # several GOPs, so the walk crosses keyframes
    patterns = [
        [0, 1, 2, 3],
        [5, 11, 12, 13, 40],  # steps onto and over keyframes without seeking
        [3, 3 + DECORD_SEEK_FRAMES + 1, 149],  # long gaps seek
        [149, 0, 77, 77, 20],  # unsorted with a repeat
        list(range(10, 150, 19)),
    ]
    for indices in patterns:
        expected = reader.get_batch(indices).asnumpy()
        got = read_frames(path, indices, backend="decord").numpy()
        np.testing.assert_array_equal(got, expected)
