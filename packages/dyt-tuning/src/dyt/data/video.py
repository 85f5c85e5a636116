"""Video clip lists (``relative/path label`` per line): K400 and SSv2 sampling protocols.

K400 (decord): 8 frames at stride 16 from a random start, short-side jitter + crop + flip; test
3 temporal clips x 1 centre crop. SSv2 (PyAV): 8 segments with one frame each (random in
training, the middle one at test), RandAugment ``rand-m7-n4-mstd0.5-inc1`` applied identically
to every frame of a clip, RandomResizedCrop scale (0.08, 1), no flip; test 1 clip x 3 spatial
crops along the long side. Test views are stacked on dim 0 and averaged at the logit level.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dyt.data.vtab import read_split_file

__all__ = [
    "VideoClipDataset",
    "VideoRandAugment",
    "clip_indices",
    "segment_indices",
    "read_video_frames",
]

SSV2_RAND_AUGMENT = "rand-m7-n4-mstd0.5-inc1"
Protocol = Literal["k400", "ssv2"]
Reader = Literal["decord", "pyav"]


def clip_indices(num_video_frames: int, num_frames: int, stride: int, start: int) -> list[int]:
    """``num_frames`` indices ``start, start+stride, ...``; short videos repeat the last frame."""
    return [min(start + i * stride, num_video_frames - 1) for i in range(num_frames)]


def segment_indices(num_video_frames: int, num_segments: int, train: bool) -> list[int]:
    """One frame per equal segment: a random one in training, the middle one at test.

    Videos shorter than ``num_segments`` repeat frames (indices never exceed the last frame).
    """
    if num_video_frames < 1:
        raise ValueError("the video has no frames")
    length = num_video_frames / num_segments
    offsets = [random.random() if train else 0.5 for _ in range(num_segments)]
    return [min(int(length * (i + o)), num_video_frames - 1) for i, o in enumerate(offsets)]


def read_video_frames(
    path: Path, reader: Reader, choose: Callable[[int], list[int]]
) -> torch.Tensor:
    """Decode the frames ``choose(num_frames)`` of a video: (T, H, W, 3) uint8.

    decord seeks to the chosen frames; PyAV decodes the whole (short, SSv2-style) video.
    """
    if reader == "decord":
        from decord import VideoReader

        video = VideoReader(str(path), num_threads=1)
        return torch.from_numpy(video.get_batch(choose(len(video))).asnumpy())
    if reader == "pyav":
        import av

        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        if not frames:
            raise ValueError(f"no video frames could be decoded from {path}")
        return torch.stack([torch.from_numpy(frames[i]) for i in choose(len(frames))])
    raise ValueError(f"reader must be 'decord' or 'pyav', got {reader!r}")


class VideoRandAugment:
    """timm RandAugment applied to a clip with the same ops and magnitudes on every frame.

    Ops are drawn once per clip; each op's random draws (probability, magnitude noise,
    interpolation) come from Python's ``random`` and are replayed for every frame.
    """

    def __init__(self, config: str = SSV2_RAND_AUGMENT, img_size: int = 224) -> None:
        from timm.data.auto_augment import rand_augment_transform

        hparams = dict(translate_const=int(img_size * 0.45), img_mean=(128, 128, 128))
        self.rand_augment = rand_augment_transform(config, hparams)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (T, H, W, 3) uint8 -> same shape and dtype, augmented consistently."""
        from PIL import Image

        augment = self.rand_augment
        images = [Image.fromarray(frame.numpy()) for frame in frames]
        if augment.choice_weights is None:
            ops = random.choices(augment.ops, k=augment.num_layers)
        else:
            ops = _weighted_sample_without_replacement(
                augment.ops, list(augment.choice_weights), augment.num_layers
            )
        for op in ops:
            state = random.getstate()
            augmented = []
            for image in images:
                random.setstate(state)
                augmented.append(op(image))
            images = augmented
        return torch.stack(
            [torch.from_numpy(np.asarray(image.convert("RGB")).copy()) for image in images]
        )


def _weighted_sample_without_replacement(items: list, weights: list[float], k: int) -> list:
    chosen = []
    items, weights = list(items), list(weights)
    for _ in range(min(k, len(items))):
        index = random.choices(range(len(items)), weights=weights)[0]
        chosen.append(items.pop(index))
        weights.pop(index)
    return chosen


class VideoClipDataset(Dataset):
    """Clips of a list file, sampled with the K400 or SSv2 protocol of the paper.

    Returns ``(clip (3, T, S, S), label)`` in training, ``(clips (V, 3, T, S, S), label)`` at
    test (V = 3 temporal clips for K400, 3 spatial crops for SSv2), normalised with
    mean = std = 0.5. ``reader`` defaults to decord for K400 and PyAV for SSv2.
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
        protocol: Protocol = "k400",
        reader: Reader | None = None,
        rand_augment: str | None = SSV2_RAND_AUGMENT,
    ) -> None:
        if protocol not in ("k400", "ssv2"):
            raise ValueError(f"protocol must be 'k400' or 'ssv2', got {protocol!r}")
        self.reader: Reader = reader or ("decord" if protocol == "k400" else "pyav")
        module = "decord" if self.reader == "decord" else "av"
        try:
            __import__(module)
        except ImportError as err:
            raise ImportError(
                f"reading videos with {self.reader} needs {module}: pip install 'dyt-tuning[video]'"
            ) from err
        self.root = Path(root)
        self.items = read_split_file(Path(list_file))
        self.train, self.num_frames, self.stride = train, num_frames, stride
        self.img_size, self.test_clips, self.protocol = img_size, test_clips, protocol
        use_augment = protocol == "ssv2" and train and rand_augment
        self.rand_augment = (
            VideoRandAugment(rand_augment, img_size) if use_augment and rand_augment else None
        )

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _to_float(frames: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (3, T, H, W) in [0, 1]."""
        return frames.permute(3, 0, 1, 2).float() / 255.0

    def _resize_short(self, clip: torch.Tensor, short: int) -> torch.Tensor:
        _, _, height, width = clip.shape
        scale = short / min(height, width)
        size = (max(short, round(height * scale)), max(short, round(width * scale)))
        return F.interpolate(clip, size=size, mode="bilinear", align_corners=False)

    def _crop(self, clip: torch.Tensor, top: int, left: int) -> torch.Tensor:
        return clip[..., top : top + self.img_size, left : left + self.img_size]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        relative, label = self.items[index]
        path = self.root / relative
        if not path.exists():
            raise FileNotFoundError(f"video listed in the clip list not found: {path}")
        if self.protocol == "ssv2":
            return self._ssv2(path), label
        return self._k400(path), label

    def _k400(self, path: Path) -> torch.Tensor:
        span = (self.num_frames - 1) * self.stride + 1
        if self.train:

            def choose(total: int) -> list[int]:
                start = int(torch.randint(0, max(1, total - span + 1), ()))
                return clip_indices(total, self.num_frames, self.stride, start)

            clip = self._to_float(read_video_frames(path, self.reader, choose))
            short = int(torch.randint(self.img_size, int(self.img_size * 258 / 224) + 1, ()))
            clip = self._resize_short(clip, short)
            top = int(torch.randint(0, clip.shape[-2] - self.img_size + 1, ()))
            left = int(torch.randint(0, clip.shape[-1] - self.img_size + 1, ()))
            clip = self._crop(clip, top, left)
            if torch.rand(()) < 0.5:
                clip = clip.flip(-1)
            return (clip - 0.5) / 0.5

        def choose_all(total: int) -> list[int]:
            last_start = max(0, total - span)
            starts = torch.linspace(0, last_start, self.test_clips).round().long().tolist()
            return [i for s in starts for i in clip_indices(total, self.num_frames, self.stride, s)]

        frames = self._to_float(read_video_frames(path, self.reader, choose_all))
        views = []
        for clip in frames.split(self.num_frames, dim=1):
            clip = self._resize_short(clip, self.img_size)
            top = (clip.shape[-2] - self.img_size) // 2
            left = (clip.shape[-1] - self.img_size) // 2
            views.append((self._crop(clip, top, left) - 0.5) / 0.5)
        return torch.stack(views)

    def _ssv2(self, path: Path) -> torch.Tensor:
        def choose(total: int) -> list[int]:
            return segment_indices(total, self.num_frames, self.train)

        frames = read_video_frames(path, self.reader, choose)
        if not self.train:
            clip = self._resize_short(self._to_float(frames), self.img_size)
            height, width = clip.shape[-2:]
            views = []
            for position in range(3):  # start, centre, end along the long side
                top = (height - self.img_size) * position // 2 if height > width else 0
                left = (width - self.img_size) * position // 2 if width >= height else 0
                views.append((self._crop(clip, top, left) - 0.5) / 0.5)
            return torch.stack(views)
        if self.rand_augment is not None:
            frames = self.rand_augment(frames)
        clip = self._to_float(frames)
        from torchvision.transforms import RandomResizedCrop

        top, left, height, width = RandomResizedCrop.get_params(clip, [0.08, 1.0], [3 / 4, 4 / 3])
        clip = clip[..., top : top + height, left : left + width]
        clip = F.interpolate(clip, size=(self.img_size, self.img_size), mode="bilinear",
                             align_corners=False)  # fmt: skip
        return (clip - 0.5) / 0.5
