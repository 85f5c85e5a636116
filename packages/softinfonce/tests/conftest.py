from __future__ import annotations

import pytest
import torch
from softinfonce.data.synthetic import SyntheticClip, SyntheticSpec, render_clip, write_clip

from papers_shared.testing import block_network  # noqa: F401

TINY_SPEC = SyntheticSpec(num_classes=2, duration=2.0, fps=25, size=32, sample_rate=16000)


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory):
    """A 2 s, 25 fps, 32 px mp4 (mpeg4 + AAC 16 kHz) and what was written into it."""
    frames, audio = render_clip(TINY_SPEC, SyntheticClip(0, 1, 1.0, 0.3, 0.9))
    path = write_clip(
        tmp_path_factory.mktemp("clips") / "clip.mp4",
        frames,
        audio,
        TINY_SPEC.fps,
        TINY_SPEC.sample_rate,
    )
    return path, frames, audio


@pytest.fixture(scope="session")
def silent_clip(tmp_path_factory: pytest.TempPathFactory):
    frames, _ = render_clip(TINY_SPEC, SyntheticClip(0, 0, 1.0, 0.0, 1.0))
    return write_clip(
        tmp_path_factory.mktemp("clips") / "silent.mp4", frames, None, TINY_SPEC.fps, 8000
    )
