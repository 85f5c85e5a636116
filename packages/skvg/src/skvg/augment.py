"""TransVG's transforms with SK-VG's text handling.

Eval: resize so the long side is ``size`` (640), ToTensor, ImageNet mean/std, pad to size x size
centred (offset ``round(d / 2 - 0.1)``), pixel mask True on padding.

Train: a random long side from {size - 32 i, i = 0..6}; with p = 0.5 instead resize the short side to
{400, 500, 600} (scaled by size / 640), crop a random 384-600 px window that keeps the box, and rescale;
colour jitter (0.4, 0.4, 0.4); horizontal flip with p = 0.5; random placement inside the canvas.

A flip swaps the words "left" and "right" in the query **and** in the knowledge passage (in SK-VG
the spatial words live mostly in the knowledge). Texts are lower-cased, as TransVG does.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from skvg.boxes import cxcywh_to_xyxy

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Letterbox",
    "swap_left_right",
    "eval_transform",
    "train_transform",
    "unletterbox",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LR = re.compile(r"\b(left|right)\b")


@dataclass(frozen=True)
class Letterbox:
    """Where the resized image sits on the square canvas."""

    scale: float
    pad_x: int
    pad_y: int
    size: int


def swap_left_right(text: str) -> str:
    """Exchange the words "left" and "right" (whole words)."""
    return _LR.sub(lambda m: "right" if m.group(1) == "left" else "left", text)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    import numpy as np

    arr = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).copy()) / 255.0
    arr = arr.permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (arr - mean) / std


def _place(
    image: Image.Image, box: list[float], size: int, pad: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Letterbox, float]:
    w, h = image.size
    if max(w, h) > size:
        raise ValueError(f"image {w}x{h} does not fit the {size} canvas")
    dw, dh = size - w, size - h
    pad_x, pad_y = pad if pad is not None else (round(dw / 2 - 0.1), round(dh / 2 - 0.1))
    pixels = torch.zeros(3, size, size)
    pixels[:, pad_y : pad_y + h, pad_x : pad_x + w] = _to_tensor(image)
    mask = torch.ones(size, size, dtype=torch.bool)
    mask[pad_y : pad_y + h, pad_x : pad_x + w] = False
    x1, y1, x2, y2 = box
    x1, x2 = x1 + pad_x, x2 + pad_x
    y1, y2 = y1 + pad_y, y2 + pad_y
    target = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]) / size
    return pixels, mask, target.clamp(0, 1), Letterbox(1.0, pad_x, pad_y, size), 1.0


def _resize(image: Image.Image, box: list[float], scale: float) -> tuple[Image.Image, list[float]]:
    w, h = image.size
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    return image.resize((nw, nh), Image.Resampling.BILINEAR), [v * scale for v in box]


def eval_transform(
    image: Image.Image, box_xyxy: list[float], query: str, knowledge: str, *, size: int = 640
) -> dict[str, Any]:
    """Letterboxed tensors plus lower-cased texts; ``target`` is (cx, cy, w, h) / size."""
    scale = size / max(image.size)
    resized, box = _resize(image, box_xyxy, scale)
    pixels, mask, target, lb, _ = _place(resized, box, size, None)
    return {
        "pixel_values": pixels,
        "pixel_mask": mask,
        "target": target,
        "letterbox": Letterbox(scale, lb.pad_x, lb.pad_y, size),
        "query": query.lower(),
        "knowledge": knowledge.lower(),
    }


def train_transform(
    image: Image.Image,
    box_xyxy: list[float],
    query: str,
    knowledge: str,
    *,
    size: int = 640,
    rng: random.Random | None = None,
    use_flip: bool = True,
    use_color: bool = True,
) -> dict[str, Any]:
    """TransVG's training augmentation (see the module docstring)."""
    rng = rng or random.Random()
    box = list(box_xyxy)
    ratio = size / 640
    if rng.random() < 0.5:
        short = rng.choice([400, 500, 600]) * ratio
        image, box = _resize(image, box, short / min(image.size))
        w, h = image.size
        lo, hi = int(384 * ratio), int(600 * ratio)
        cw, ch = min(w, rng.randint(lo, hi)), min(h, rng.randint(lo, hi))
        # keep the box inside the crop where possible
        x_min, x_max = max(0, int(box[2]) - cw), min(int(box[0]), w - cw)
        y_min, y_max = max(0, int(box[3]) - ch), min(int(box[1]), h - ch)
        cx = rng.randint(x_min, x_max) if x_min <= x_max else max(0, min(int(box[0]), w - cw))
        cy = rng.randint(y_min, y_max) if y_min <= y_max else max(0, min(int(box[1]), h - ch))
        image = image.crop((cx, cy, cx + cw, cy + ch))
        box = [
            max(0.0, box[0] - cx),
            max(0.0, box[1] - cy),
            min(float(cw), box[2] - cx),
            min(float(ch), box[3] - cy),
        ]
    long_side = size - 32 * rng.randint(0, 6)
    image, box = _resize(image, box, long_side / max(image.size))
    if use_color:
        from torchvision.transforms import ColorJitter

        torch.manual_seed(rng.getrandbits(31))
        image = ColorJitter(0.4, 0.4, 0.4)(image)
    query, knowledge = query.lower(), knowledge.lower()
    if use_flip and rng.random() < 0.5:
        w = image.size[0]
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        box = [w - box[2], box[1], w - box[0], box[3]]
        query, knowledge = swap_left_right(query), swap_left_right(knowledge)
    w, h = image.size
    pad = (rng.randint(0, size - w), rng.randint(0, size - h))
    pixels, mask, target, lb, _ = _place(image, box, size, pad)
    return {
        "pixel_values": pixels,
        "pixel_mask": mask,
        "target": target,
        "letterbox": lb,
        "query": query,
        "knowledge": knowledge,
    }


def unletterbox(pred: torch.Tensor, letterbox: Letterbox) -> list[float]:
    """(4,) normalised (cx, cy, w, h) on the canvas -> [x1, y1, x2, y2] in original-image pixels."""
    xyxy = cxcywh_to_xyxy(pred.detach().float().clamp(0, 1)) * letterbox.size
    x1, y1, x2, y2 = xyxy.tolist()
    s = letterbox.scale
    return [
        (x1 - letterbox.pad_x) / s,
        (y1 - letterbox.pad_y) / s,
        (x2 - letterbox.pad_x) / s,
        (y2 - letterbox.pad_y) / s,
    ]
