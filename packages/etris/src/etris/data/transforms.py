"""Letterbox to the model size and back, CLIP normalisation, and tokenisation at word_len."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from etris.models.towers import CLIP_MEAN, CLIP_STD

__all__ = [
    "Letterbox",
    "letterbox_params",
    "warp_letterbox",
    "unwarp_letterbox",
    "normalize_image",
    "tokenize",
    "image_to_tensor",
]


@dataclass(frozen=True)
class Letterbox:
    """The affine map of a letterbox: x_out = scale * x_in + offset_x (pixel-index coordinates)."""

    scale: float
    offset_x: float
    offset_y: float
    size: int
    orig_height: int
    orig_width: int


def letterbox_params(height: int, width: int, size: int) -> Letterbox:
    """Aspect-preserving fit into size x size, centred (the paper's code's affine matrix)."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = min(size / height, size / width)
    new_h, new_w = height * scale, width * scale
    return Letterbox(scale, (size - new_w) / 2.0, (size - new_h) / 2.0, size, height, width)


def _affine_sample(
    src: torch.Tensor, out_hw: tuple[int, int], scale: float, off_x: float, off_y: float, mode: str
) -> torch.Tensor:
    """out[y, x] = src[(y - off_y) / scale, (x - off_x) / scale], zeros outside. src: (B, C, H, W)."""
    height, width = src.shape[-2:]
    ys = torch.arange(out_hw[0], dtype=torch.float64)
    xs = torch.arange(out_hw[1], dtype=torch.float64)
    src_y = (ys - off_y) / scale
    src_x = (xs - off_x) / scale
    # normalised with align_corners=True: pixel index i -> -1 + 2 i / (n - 1)
    gy = -1 + 2 * src_y / max(height - 1, 1)
    gx = -1 + 2 * src_x / max(width - 1, 1)
    grid_y, grid_x = torch.meshgrid(gy, gx, indexing="ij")
    grid = torch.stack([grid_x, grid_y], dim=-1)[None].expand(src.shape[0], -1, -1, -1)
    return F.grid_sample(
        src, grid.to(src.dtype), mode=mode, padding_mode="zeros", align_corners=True
    )


def warp_letterbox(
    image: torch.Tensor, box: Letterbox, mode: str = "bicubic", fill: Sequence[float] | None = None
) -> torch.Tensor:
    """Letterbox an image or mask. image: (C, H, W) float -> (C, size, size); pad with ``fill``."""
    src = image[None].float()
    if fill is not None:
        fill_t = torch.tensor(fill, dtype=src.dtype).view(1, -1, 1, 1)
        src = src - fill_t
    out = _affine_sample(src, (box.size, box.size), box.scale, box.offset_x, box.offset_y, mode)
    if fill is not None:
        out = out + fill_t
    return out[0]


def unwarp_letterbox(pred: torch.Tensor, box: Letterbox, mode: str = "bicubic") -> torch.Tensor:
    """Map a (C, size, size) prediction back to (C, orig_H, orig_W) with the inverse affine."""
    inv_scale = 1.0 / box.scale
    out = _affine_sample(
        pred[None].float(),
        (box.orig_height, box.orig_width),
        inv_scale,
        -box.offset_x * inv_scale,
        -box.offset_y * inv_scale,
        mode,
    )
    return out[0]


def image_to_tensor(image: Any) -> torch.Tensor:
    """PIL image or HxWx3 uint8 array -> (3, H, W) float in [0, 255]."""
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {array.shape}")
    return torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float()


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 255] -> CLIP-normalised."""
    mean = torch.tensor(CLIP_MEAN, dtype=image.dtype).view(3, 1, 1) * 255
    std = torch.tensor(CLIP_STD, dtype=image.dtype).view(3, 1, 1) * 255
    return (image - mean) / std


def tokenize(texts: str | Sequence[str], word_len: int) -> torch.Tensor:
    """open_clip BPE tokens at context length word_len: SOT ... EOT, zero padding, EOT kept when
    truncating. -> (N, word_len) int64."""
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = _tokenizer_cache.get("t")
    if tokenizer is None:
        tokenizer = _tokenizer_cache.setdefault("t", SimpleTokenizer())
    if isinstance(texts, str):
        texts = [texts]
    return tokenizer(list(texts), context_length=word_len)


_tokenizer_cache: dict[str, Any] = {}
