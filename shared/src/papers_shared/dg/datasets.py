"""Domain lists in DomainBed's form: one dataset per domain, facts as class attributes.

Embedded (no download): ``RotatedDigits`` and ``ColoredDigits`` built from scikit-learn's real
handwritten digits, and ``DebugDomains`` (random tensors). On disk: the DomainBed folder layouts
``<data_dir>/<FOLDER>/<domain>/<class>/<image>`` of PACS, VLCS, OfficeHome, TerraIncognita, DomainNet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch.utils.data import Dataset, TensorDataset

from papers_shared.data.digits import load_digits

__all__ = [
    "DomainList",
    "DATASETS",
    "register_dataset",
    "get_dataset_class",
    "get_dataset",
    "RotatedDigits",
    "ColoredDigits",
    "DebugDomains",
    "FolderDomains",
    "PACS",
    "VLCS",
    "OfficeHome",
    "TerraIncognita",
    "DomainNet",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

D = TypeVar("D", bound=type["DomainList"])
DATASETS: dict[str, type[DomainList]] = {}


def register_dataset(cls: D) -> D:
    DATASETS[cls.__name__] = cls
    return cls


def get_dataset_class(name: str) -> type[DomainList]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
    return DATASETS[name]


def get_dataset(
    name: str, data_dir: str | Path | None, test_envs: Sequence[int], hparams: Mapping[str, Any]
) -> DomainList:
    return get_dataset_class(name)(data_dir, test_envs, hparams)


class DomainList:
    """DomainBed's ``MultipleDomainDataset``: ``datasets[i]`` yields ``(x: (C, H, W), y: int)``."""

    ENVIRONMENTS: ClassVar[list[str]] = []
    N_STEPS: ClassVar[int] = 5001
    CHECKPOINT_FREQ: ClassVar[int] = 100
    N_WORKERS: ClassVar[int] = 0

    datasets: list[Dataset]
    input_shape: tuple[int, int, int]
    num_classes: int

    def __init__(
        self,
        data_dir: str | Path | None = None,
        test_envs: Sequence[int] = (),
        hparams: Mapping[str, Any] | None = None,
    ) -> None:
        """Subclasses build ``datasets``, ``input_shape`` and ``num_classes`` from these."""
        raise NotImplementedError(f"{type(self).__name__} must define __init__")

    def __getitem__(self, index: int) -> Dataset:
        return self.datasets[index]

    def __len__(self) -> int:
        return len(self.datasets)

    def check_test_envs(self, test_envs: Sequence[int]) -> None:
        bad = [t for t in test_envs if not 0 <= t < len(self.ENVIRONMENTS)]
        if bad:
            raise ValueError(
                f"test_envs {bad} out of range for {type(self).__name__} with environments "
                f"{list(enumerate(self.ENVIRONMENTS))}"
            )


def _split_across_domains(n_items: int, n_domains: int, seed: int = 0) -> list[torch.Tensor]:
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed))
    return [order[i::n_domains] for i in range(n_domains)]


@register_dataset
class RotatedDigits(DomainList):
    """RotatedMNIST on real digits: six domains rotated by 0, 15, ..., 75 degrees (10 classes).

    The 1,797 digits are split into disjoint, equally sized domains (about 300 each).
    """

    ENVIRONMENTS: ClassVar[list[str]] = ["0", "15", "30", "45", "60", "75"]
    N_STEPS: ClassVar[int] = 2001

    def __init__(
        self,
        data_dir: str | Path | None = None,
        test_envs: Sequence[int] = (),
        hparams: Mapping[str, Any] | None = None,
        size: int = 16,
    ) -> None:
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        self.check_test_envs(test_envs)
        images, labels = load_digits(size)
        self.datasets = []
        for angle, index in zip(
            self.ENVIRONMENTS, _split_across_domains(len(labels), len(self.ENVIRONMENTS))
        ):
            rotated = TF.rotate(
                images[index], float(angle), interpolation=InterpolationMode.BILINEAR
            )
            self.datasets.append(TensorDataset(rotated, labels[index]))
        self.input_shape = (1, size, size)
        self.num_classes = 10


@register_dataset
class ColoredDigits(DomainList):
    """ColoredMNIST on real digits: binary label (digit < 5) with 25 % label noise, and a colour
    (red / green channel) that agrees with the label with probability 90 %, 80 % and 10 % in the
    three domains, so colour is a spurious feature that flips in the last domain. x: (2, H, W).
    """

    ENVIRONMENTS: ClassVar[list[str]] = ["+90%", "+80%", "-90%"]
    COLOR_FLIP: ClassVar[tuple[float, ...]] = (0.1, 0.2, 0.9)
    LABEL_NOISE: ClassVar[float] = 0.25
    N_STEPS: ClassVar[int] = 2001

    def __init__(
        self,
        data_dir: str | Path | None = None,
        test_envs: Sequence[int] = (),
        hparams: Mapping[str, Any] | None = None,
        size: int = 16,
    ) -> None:
        self.check_test_envs(test_envs)
        images, digits = load_digits(size)
        generator = torch.Generator().manual_seed(0)
        self.datasets = []
        for flip, index in zip(
            self.COLOR_FLIP, _split_across_domains(len(digits), len(self.ENVIRONMENTS))
        ):
            labels = (digits[index] < 5).float()
            labels = self._xor(labels, self._bernoulli(self.LABEL_NOISE, len(labels), generator))
            colors = self._xor(labels, self._bernoulli(flip, len(labels), generator))
            x = torch.cat([images[index], images[index]], dim=1)
            x[torch.arange(len(x)), (1 - colors).long(), :, :] *= 0
            self.datasets.append(TensorDataset(x, labels.long()))
        self.input_shape = (2, size, size)
        self.num_classes = 2

    @staticmethod
    def _bernoulli(p: float, n: int, generator: torch.Generator) -> torch.Tensor:
        return (torch.rand(n, generator=generator) < p).float()

    @staticmethod
    def _xor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs()


@register_dataset
class DebugDomains(DomainList):
    """Three domains of random 3x28x28 tensors with 2 classes (DomainBed's Debug28), for tests."""

    ENVIRONMENTS: ClassVar[list[str]] = ["0", "1", "2"]
    N_STEPS: ClassVar[int] = 5
    CHECKPOINT_FREQ: ClassVar[int] = 2

    def __init__(
        self,
        data_dir: str | Path | None = None,
        test_envs: Sequence[int] = (),
        hparams: Mapping[str, Any] | None = None,
    ) -> None:
        self.check_test_envs(test_envs)
        generator = torch.Generator().manual_seed(0)
        self.input_shape = (3, 28, 28)
        self.num_classes = 2
        self.datasets = [
            TensorDataset(
                torch.randn(16, *self.input_shape, generator=generator),
                torch.randint(0, self.num_classes, (16,), generator=generator),
            )
            for _ in self.ENVIRONMENTS
        ]


def _load_image(path: str) -> Any:
    """Open an RGB image, accepting truncated files as DomainBed does (without a global flag)."""
    from PIL import Image, ImageFile

    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def domainbed_transforms(augment: bool) -> Callable[[Any], torch.Tensor]:
    """Test: Resize((224, 224)); train (augment): RandomResizedCrop(0.7-1), flip, ColorJitter(0.3 x4),
    RandomGrayscale(0.1). Both end with ToTensor and ImageNet normalisation."""
    from torchvision import transforms as T

    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if not augment:
        return T.Compose([T.Resize((224, 224)), T.ToTensor(), normalize])
    return T.Compose(
        [
            T.RandomResizedCrop(224, scale=(0.7, 1.0)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.3, 0.3, 0.3, 0.3),
            T.RandomGrayscale(),
            T.ToTensor(),
            normalize,
        ]
    )


class FolderDomains(DomainList):
    """``<data_dir>/<FOLDER>/<domain>/<class>/<image>`` read with torchvision's ``ImageFolder``.

    Training domains get DomainBed's augmentation when ``hparams['data_augmentation']`` (their
    validation split too, as in DomainBed); test domains get the plain transform. Missing folders,
    empty domains and domains with different class sets raise errors that name what is wrong.
    """

    FOLDER: ClassVar[str] = ""
    N_STEPS: ClassVar[int] = 5001
    CHECKPOINT_FREQ: ClassVar[int] = 300
    N_WORKERS: ClassVar[int] = 4

    def __init__(
        self,
        data_dir: str | Path | None,
        test_envs: Sequence[int],
        hparams: Mapping[str, Any] | None,
    ) -> None:
        from torchvision.datasets import ImageFolder

        self.check_test_envs(test_envs)
        if data_dir is None:
            raise ValueError(
                f"{type(self).__name__} needs --data_dir (the folder holding {self.FOLDER}/)"
            )
        root = Path(data_dir) / self.FOLDER
        if not root.is_dir():
            raise FileNotFoundError(
                f"{type(self).__name__} folder not found: {root} (expected domains {self.ENVIRONMENTS}, "
                f"each holding one folder per class; DomainBed's download script creates this layout)"
            )
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        missing = [d for d in self.ENVIRONMENTS if d not in found]
        if missing:
            raise FileNotFoundError(f"{root} lacks domain folder(s) {missing}; found {found}")
        extra = sorted(set(found) - set(self.ENVIRONMENTS))
        if extra:
            logger.warning("ignoring unexpected folders in %s: %s", root, extra)
        augment = bool((hparams or {}).get("data_augmentation", True))
        self.datasets = []
        classes: list[str] | None = None
        for index, domain in enumerate(self.ENVIRONMENTS):
            use_augment = augment and index not in test_envs
            try:
                folder = ImageFolder(
                    str(root / domain),
                    transform=domainbed_transforms(use_augment),
                    loader=_load_image,
                )
            except (FileNotFoundError, RuntimeError) as err:
                raise FileNotFoundError(
                    f"domain folder {root / domain} is malformed: {err}"
                ) from err
            if classes is None:
                classes = folder.classes
            elif folder.classes != classes:
                raise ValueError(
                    f"domain {domain!r} has classes {folder.classes}, but {self.ENVIRONMENTS[0]!r} has {classes}"
                )
            self.datasets.append(folder)
        self.classes = classes or []
        self.input_shape = (3, 224, 224)
        self.num_classes = len(self.classes)


@register_dataset
class PACS(FolderDomains):
    FOLDER = "PACS"
    ENVIRONMENTS: ClassVar[list[str]] = ["art_painting", "cartoon", "photo", "sketch"]


@register_dataset
class VLCS(FolderDomains):
    FOLDER = "VLCS"
    ENVIRONMENTS: ClassVar[list[str]] = ["Caltech101", "LabelMe", "SUN09", "VOC2007"]


@register_dataset
class OfficeHome(FolderDomains):
    FOLDER = "office_home"
    ENVIRONMENTS: ClassVar[list[str]] = ["Art", "Clipart", "Product", "Real World"]


@register_dataset
class TerraIncognita(FolderDomains):
    FOLDER = "terra_incognita"
    ENVIRONMENTS: ClassVar[list[str]] = [
        "location_100",
        "location_38",
        "location_43",
        "location_46",
    ]


@register_dataset
class DomainNet(FolderDomains):
    FOLDER = "domain_net"
    ENVIRONMENTS: ClassVar[list[str]] = [
        "clipart",
        "infograph",
        "painting",
        "quickdraw",
        "real",
        "sketch",
    ]
    CHECKPOINT_FREQ: ClassVar[int] = 1000
