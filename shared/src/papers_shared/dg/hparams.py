"""Hyper-parameters with a default and a sampling distribution each (DomainBed's registry).

Each random draw uses ``RandomState(seed_hash(run_seed, name))``, so adding a hyper-parameter leaves
every other draw unchanged, and the values match DomainBed's for the same names and seeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from papers_shared.seeding import seed_hash

__all__ = [
    "HParam",
    "HParamSpace",
    "base_hparam_space",
    "default_hparams",
    "random_hparams",
    "resolve_hparams",
]

# DomainBed treats these as "small image" datasets (different lr / batch size ranges).
SMALL_IMAGE_DATASETS = frozenset(
    {"Debug28", "DebugDomains", "RotatedMNIST", "ColoredMNIST", "RotatedDigits", "ColoredDigits"}
)


@dataclass(frozen=True)
class HParam:
    default: Any
    sample: Callable[[np.random.RandomState], Any]
    help: str = ""


HParamSpace = dict[str, HParam]


def _choice(values: list[Any]) -> Callable[[np.random.RandomState], Any]:
    return lambda r: values[r.choice(len(values))]


def base_hparam_space(dataset: str) -> HParamSpace:
    """The hyper-parameters every algorithm has (DomainBed's ``_hparams`` common block)."""
    small = dataset in SMALL_IMAGE_DATASETS
    space: HParamSpace = {
        "data_augmentation": HParam(True, lambda r: True, "DomainBed training-domain augmentation"),
        "resnet18": HParam(
            False, lambda r: False, "ResNet-18 instead of ResNet-50 (224x224 inputs)"
        ),
        "resnet_pretrained": HParam(
            True, lambda r: True, "start from torchvision IMAGENET1K_V1 weights"
        ),
        "resnet_dropout": HParam(
            0.0, _choice([0.0, 0.1, 0.5]), "dropout after the pooled features"
        ),
        "class_balanced": HParam(False, lambda r: False, "class-balanced sampling of each domain"),
        "nonlinear_classifier": HParam(False, lambda r: False, "MLP head instead of a linear one"),
        "cnn_width": HParam(
            64, lambda r: 64, "first-layer width of the small-image CNN featurizer"
        ),
    }
    if small:
        space["lr"] = HParam(1e-3, lambda r: 10 ** r.uniform(-4.5, -2.5))
        space["weight_decay"] = HParam(0.0, lambda r: 0.0)
        space["batch_size"] = HParam(64, lambda r: int(2 ** r.uniform(3, 9)))
    else:
        space["lr"] = HParam(5e-5, lambda r: 10 ** r.uniform(-5, -3.5))
        space["weight_decay"] = HParam(0.0, lambda r: 10 ** r.uniform(-6, -2))
        upper = 5.0 if dataset == "DomainNet" else 5.5
        space["batch_size"] = HParam(32, lambda r: int(2 ** r.uniform(3, upper)))
    return space


def default_hparams(space: Mapping[str, HParam]) -> dict[str, Any]:
    return {name: h.default for name, h in space.items()}


def random_hparams(space: Mapping[str, HParam], seed: int) -> dict[str, Any]:
    return {
        name: h.sample(np.random.RandomState(seed_hash(seed, name))) for name, h in space.items()
    }


def resolve_hparams(
    space: Mapping[str, HParam],
    hparams_seed: int = 0,
    trial_seed: int = 0,
    overrides: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """DomainBed's rule: defaults for ``hparams_seed == 0``, else a random draw seeded by
    ``seed_hash(hparams_seed, trial_seed)``; then ``overrides`` (a dict or JSON text) win.

    A misspelt override key raises ``ValueError`` listing the valid names.
    """
    if hparams_seed == 0:
        hparams = default_hparams(space)
    else:
        hparams = random_hparams(space, seed_hash(hparams_seed, trial_seed))
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides) if overrides.strip() else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"--hparams must be a JSON object, got {overrides!r}: {err}") from err
    if overrides:
        if not isinstance(overrides, Mapping):
            raise ValueError(
                f"hparams overrides must be a JSON object, got {type(overrides).__name__}"
            )
        unknown = sorted(set(overrides) - set(space))
        if unknown:
            raise ValueError(f"unknown hyper-parameter(s) {unknown}; valid names: {sorted(space)}")
        hparams.update(overrides)
    return hparams
