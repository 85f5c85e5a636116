"""VTAB-1K in the SSF/NOAH folder layout, and the group-mean reporting of the paper."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch.utils.data import Dataset

__all__ = [
    "VTAB_TASKS",
    "VTAB_GROUPS",
    "VTABFolder",
    "read_split_file",
    "vtab_group_means",
    "vtab_eval_transform",
    "image_transform",
]

# task folder -> number of classes
VTAB_TASKS: dict[str, int] = {
    "cifar": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37,
    "svhn": 10, "sun397": 397, "patch_camelyon": 2, "eurosat": 10, "resisc45": 45,
    "diabetic_retinopathy": 5, "clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4,
    "dsprites_loc": 16, "dsprites_ori": 16, "smallnorb_azi": 18, "smallnorb_ele": 9,
}  # fmt: skip
VTAB_GROUPS: dict[str, tuple[str, ...]] = {
    "natural": ("cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn",
                "sun397"),
    "specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "structured": ("clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori",
                   "smallnorb_azi", "smallnorb_ele"),
}  # fmt: skip


def read_split_file(path: Path) -> list[tuple[str, int]]:
    """Parse ``relative/path label`` lines (whitespace separated, integer label)."""
    if not path.exists():
        raise FileNotFoundError(
            f"split file not found: {path} (VTAB-1K task folders hold train800val200.txt and "
            "test.txt; see the SSF/NOAH VTAB-1K preparation)"
        )
    items = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{number}: expected 'relative/path label', got {line!r}")
        items.append((parts[0], int(parts[1])))
    if not items:
        raise ValueError(f"{path} lists no images")
    return items


def image_transform(img_size: int = 224, augment: str = "none", train: bool = True) -> Callable:
    """The paper's image pipelines, normalised with mean = std = 0.5.

    ``augment="none"`` (VTAB-1K): bicubic resize to img_size x img_size, train and test alike.
    ``augment="rrc_flip"`` (full image sets): RandomResizedCrop + horizontal flip in training;
    resize the short side to img_size * 256 / 224 then centre crop at test.
    """
    from torchvision import transforms

    if augment == "none":
        return vtab_eval_transform(img_size)
    if augment != "rrc_flip":
        raise ValueError(f"augment must be 'none' or 'rrc_flip', got {augment!r}")
    bicubic = transforms.InterpolationMode.BICUBIC
    if train:
        steps = [
            transforms.RandomResizedCrop(img_size, interpolation=bicubic),
            transforms.RandomHorizontalFlip(),
        ]
    else:
        steps = [
            transforms.Resize(round(img_size * 256 / 224), interpolation=bicubic),
            transforms.CenterCrop(img_size),
        ]
    normalise = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return transforms.Compose([*steps, transforms.ToTensor(), normalise])


def vtab_eval_transform(img_size: int = 224) -> Callable:
    """The paper's VTAB transform: bicubic resize to img_size x img_size, normalise mean=std=0.5."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(
                (img_size, img_size), interpolation=transforms.InterpolationMode.BICUBIC
            ),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )


class VTABFolder(Dataset):
    """One VTAB-1K task folder: images plus ``<split>.txt`` (e.g. train800val200, test)."""

    def __init__(
        self, root: str | Path, split: str = "train800val200", transform: Callable | None = None
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"VTAB task folder not found: {self.root}")
        self.items = read_split_file(self.root / f"{split}.txt")
        self.transform = transform or vtab_eval_transform()
        self.num_classes = max(label for _, label in self.items) + 1
        if self.root.name in VTAB_TASKS:
            self.num_classes = max(self.num_classes, VTAB_TASKS[self.root.name])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        relative, label = self.items[index]
        path = self.root / relative
        if not path.exists():
            raise FileNotFoundError(f"image listed in {self.root} not found: {path}")
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), label


def vtab_group_means(accuracies: Mapping[str, float]) -> dict[str, float]:
    """Natural / specialized / structured means and their mean (the paper's "group mean").

    Tasks missing from ``accuracies`` are left out of their group; an empty group is omitted.
    """
    unknown = sorted(set(accuracies) - set(VTAB_TASKS))
    if unknown:
        raise ValueError(f"unknown VTAB task(s) {unknown}; valid: {sorted(VTAB_TASKS)}")
    means: dict[str, float] = {}
    for group, tasks in VTAB_GROUPS.items():
        values = [accuracies[t] for t in tasks if t in accuracies]
        if values:
            means[group] = sum(values) / len(values)
    if means:
        means["group_mean"] = sum(means.values()) / len(means)
    return means
