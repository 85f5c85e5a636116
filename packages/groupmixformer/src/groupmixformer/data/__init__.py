"""ImageFolder datasets with the release's train (RandAugment, RandomErasing) and eval
(resize 256 bicubic, center-crop 224) transforms, built by timm's transform factory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

__all__ = ["build_transform", "image_folder"]


def build_transform(
    img_size: int = 224,
    *,
    is_training: bool,
    auto_augment: str | None = "rand-m9-mstd0.5-inc1",
    re_prob: float = 0.25,
    color_jitter: float = 0.4,
    crop_pct: float = 0.875,
):
    """timm transform: train = RandomResizedCrop bicubic, hflip, RandAugment, RandomErasing
    (pixel mode, count 1); eval = resize the short side to img_size / crop_pct, center crop."""
    from timm.data.transforms_factory import create_transform

    if is_training:
        return create_transform(
            img_size,
            is_training=True,
            color_jitter=color_jitter,
            auto_augment=auto_augment,
            interpolation="bicubic",
            re_prob=re_prob,
            re_mode="pixel",
            re_count=1,
        )
    return create_transform(img_size, is_training=False, interpolation="bicubic", crop_pct=crop_pct)


def image_folder(root: str | Path, transform: Any = None) -> ImageFolder:
    """``<root>/<class>/<image>`` with classes sorted alphabetically (torchvision ImageFolder)."""
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder not found: {root} (expected <root>/<class_name>/<image files>)"
        )
    return ImageFolder(str(root), transform=transform)
