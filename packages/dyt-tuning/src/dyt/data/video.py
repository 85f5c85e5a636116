"""Video clip lists (``relative/path label`` per line) read with decord, K400-style sampling."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dyt.data.vtab import read_split_file

__all__ = ["VideoClipDataset", "clip_indices"]


def clip_indices(num_video_frames: int, num_frames: int, stride: int, start: int) -> list[int]:
    """``num_frames`` indices ``start, start+stride, ...``; short videos repeat the last frame."""
    return [min(start + i * stride, num_video_frames - 1) for i in range(num_frames)]


class VideoClipDataset(Dataset):
    """K400-style clips: 8 frames at stride 16, short-side jitter 224-258 + random crop + flip in
    training; 3 evenly spread temporal clips x 1 centre crop at test (views on dim 0).

    Returns ``(clip (3, T, S, S), label)`` in training, ``(clips (V, 3, T, S, S), label)`` at test,
    normalised with mean = std = 0.5.
    """

    def __init__(
        self,
        list_file: str | Path,
        root: str | Path,
        train: bool = True,
        num_frames: int = 8,
        stride: int = 16,
        img_size: int = 224,
        test_clips: int = 3,
    ) -> None:
        try:
            import decord  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "reading videos needs decord: pip install 'dyt-tuning[video]'"
            ) from err
        self.root = Path(root)
        self.items = read_split_file(Path(list_file))
        self.train, self.num_frames, self.stride = train, num_frames, stride
        self.img_size, self.test_clips = img_size, test_clips

    def __len__(self) -> int:
        return len(self.items)

    def _frames(self, reader, indices: list[int]) -> torch.Tensor:
        frames = torch.from_numpy(reader.get_batch(indices).asnumpy())  # (T, H, W, 3) uint8
        return frames.permute(3, 0, 1, 2).float() / 255.0  # (3, T, H, W)

    def _resize_short(self, clip: torch.Tensor, short: int) -> torch.Tensor:
        _, _, height, width = clip.shape
        scale = short / min(height, width)
        size = (max(short, round(height * scale)), max(short, round(width * scale)))
        return F.interpolate(clip, size=size, mode="bilinear", align_corners=False)

    def _crop(self, clip: torch.Tensor, top: int, left: int) -> torch.Tensor:
        return clip[..., top : top + self.img_size, left : left + self.img_size]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from decord import VideoReader

        relative, label = self.items[index]
        path = self.root / relative
        if not path.exists():
            raise FileNotFoundError(f"video listed in the clip list not found: {path}")
        reader = VideoReader(str(path), num_threads=1)
        total = len(reader)
        span = (self.num_frames - 1) * self.stride + 1
        if self.train:
            start = int(torch.randint(0, max(1, total - span + 1), ()))
            clip = self._frames(reader, clip_indices(total, self.num_frames, self.stride, start))
            short = int(torch.randint(self.img_size, int(self.img_size * 258 / 224) + 1, ()))
            clip = self._resize_short(clip, short)
            top = int(torch.randint(0, clip.shape[-2] - self.img_size + 1, ()))
            left = int(torch.randint(0, clip.shape[-1] - self.img_size + 1, ()))
            clip = self._crop(clip, top, left)
            if torch.rand(()) < 0.5:
                clip = clip.flip(-1)
            return (clip - 0.5) / 0.5, label
        last_start = max(0, total - span)
        starts = torch.linspace(0, last_start, self.test_clips).round().long().tolist()
        views = []
        for start in starts:
            clip = self._resize_short(
                self._frames(reader, clip_indices(total, self.num_frames, self.stride, start)),
                self.img_size,
            )
            top = (clip.shape[-2] - self.img_size) // 2
            left = (clip.shape[-1] - self.img_size) // 2
            views.append((self._crop(clip, top, left) - 0.5) / 0.5)
        return torch.stack(views), label
