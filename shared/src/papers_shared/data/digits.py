"""scikit-learn's 1,797 real 8x8 handwritten digits as tensors, optionally resized."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["load_digits"]


def load_digits(
    size: int = 8, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``images: (1797, 1, size, size)`` in [0, 1] and ``labels: (1797,)`` int64 in 0..9.

    The data ship inside scikit-learn (UCI optical digits test set), so nothing is downloaded.
    Resizing uses bilinear interpolation with antialiasing when shrinking.
    """
    if not isinstance(size, int) or size < 4:
        raise ValueError(f"size must be an int >= 4, got {size!r}")
    from sklearn.datasets import load_digits as sklearn_digits

    flat, target = sklearn_digits(return_X_y=True)  # flat: (1797, 64), the 8x8 images row-major
    images = torch.as_tensor(flat, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    labels = torch.as_tensor(target, dtype=torch.int64)
    if size != 8:
        images = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=size < 8
        )
        images = images.clamp_(0.0, 1.0)
    return images.to(dtype), labels
