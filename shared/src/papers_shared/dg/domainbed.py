"""Adding the workspace's DG algorithms to a DomainBed checkout (facebookresearch/DomainBed).

DomainBed finds an algorithm by class name in ``domainbed.algorithms`` (``get_algorithm_class``
looks the name up in that module's globals; ``ALGORITHMS`` lists the names its sweeps use) and
its hyper-parameters in ``hparams_registry._hparams(algorithm, dataset, random_seed)``, which
``default_hparams`` and ``random_hparams`` call. :func:`register_with_domainbed` sets the class on
the first module and wraps ``_hparams`` so that, for that algorithm, it also defines the
algorithm's own hyper-parameters: only names DomainBed does not define itself, each drawn with
``RandomState(misc.seed_hash(random_seed, name))`` as DomainBed's own are.

Written against DomainBed commit ``b93c22a1cfc3b2428398272c1a116c8de1f4139e`` (2024-12-31).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from papers_shared.dg.hparams import HParam, base_hparam_space
from papers_shared.seeding import seed_hash

__all__ = [
    "DOMAINBED_COMMIT",
    "DOMAINBED_SWITCHES",
    "algorithm_only_hparams",
    "register_with_domainbed",
    "write_domainbed_stub",
]

DOMAINBED_COMMIT = "b93c22a1cfc3b2428398272c1a116c8de1f4139e"

# DomainBed's network switches (its registry's common block) and what our networks do with them.
DOMAINBED_SWITCHES = {
    "resnet18": "honoured: ResNet-18 instead of ResNet-50",
    "resnet_dropout": "honoured: dropout on the pooled features",
    "nonlinear_classifier": "honoured where the method allows it (RIDG refuses it)",
    "resnet50_augmix": "not honoured: ResNet-50 starts from torchvision IMAGENET1K_V1, as in the "
    "papers' code",
    "freeze_bn": "not honoured: BatchNorm2d statistics are always frozen, as in the papers' code",
    "vit": "refused when true (no ViT backbone)",
    "dinov2": "refused when true (no DINOv2 backbone)",
}


def algorithm_only_hparams(
    extra_hparams: Callable[[str], Mapping[str, HParam]], dataset: str
) -> dict[str, HParam]:
    """The algorithm's hyper-parameters minus the ones every algorithm has (``resnet18``,
    ``lr``...), which DomainBed's registry defines itself."""
    common = set(base_hparam_space(dataset))
    return {k: v for k, v in extra_hparams(dataset).items() if k not in common}


def register_with_domainbed(
    algorithms: ModuleType,
    hparams_registry: ModuleType,
    classes: Mapping[str, type],
    extra_hparams: Callable[[str], Mapping[str, HParam]],
) -> None:
    """Make ``classes`` (DomainBed name -> class) usable by a DomainBed checkout.

    algorithms: the checkout's ``domainbed.algorithms`` module.
    hparams_registry: its ``domainbed.hparams_registry`` module.
    extra_hparams: ``dataset -> {name: HParam}``, the algorithm's own hyper-parameters.

    Registering the same classes twice is a no-op. Raises ``ValueError`` when DomainBed already
    has a different class of that name, or when its registry already defines one of the added
    hyper-parameter names for the algorithm (DomainBed's own duplicate-name rule).
    """
    for name, cls in classes.items():
        existing = getattr(algorithms, name, None)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"DomainBed already defines an algorithm {name!r} ({existing!r}); not replacing it"
            )
        setattr(algorithms, name, cls)
        names = getattr(algorithms, "ALGORITHMS", None)
        if isinstance(names, list) and name not in names:
            names.append(name)
    registered: set[str] = getattr(hparams_registry, "_papers_dg_registered", set())
    new = set(classes) - registered
    if not new:
        return
    original = hparams_registry._hparams
    misc = getattr(hparams_registry, "misc", None)
    hash_fn = getattr(misc, "seed_hash", seed_hash)

    def _hparams(algorithm: str, dataset: str, random_seed: int) -> dict[str, Any]:
        hparams = original(algorithm, dataset, random_seed)
        if algorithm not in new:
            return hparams
        for name, hparam in algorithm_only_hparams(extra_hparams, dataset).items():
            if name in hparams:
                raise ValueError(
                    f"DomainBed's registry already defines {name!r} for {algorithm}; the "
                    "adapter adds only names DomainBed lacks"
                )
            draw = hparam.sample(np.random.RandomState(hash_fn(random_seed, name)))
            hparams[name] = (hparam.default, draw)
        return hparams

    setattr(hparams_registry, "_hparams", _hparams)  # noqa: B010  (a module attribute)
    setattr(hparams_registry, "_papers_dg_registered", registered | new)  # noqa: B010


_STUB_MISC = """
import hashlib


def seed_hash(*args):
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2**31)
"""

_STUB_REGISTRY = """
import numpy as np

from domainbed.lib import misc


def _hparams(algorithm, dataset, random_seed):
    small_images = ["Debug28", "RotatedMNIST", "ColoredMNIST"]
    hparams = {}

    def _hparam(name, default_val, random_val_fn):
        assert name not in hparams
        state = np.random.RandomState(misc.seed_hash(random_seed, name))
        hparams[name] = (default_val, random_val_fn(state))

    _hparam("data_augmentation", True, lambda r: True)
    _hparam("resnet18", False, lambda r: False)
    _hparam("resnet50_augmix", True, lambda r: True)
    _hparam("dinov2", False, lambda r: False)
    _hparam("vit", False, lambda r: False)
    _hparam("vit_attn_tune", False, lambda r: False)
    _hparam("freeze_bn", False, lambda r: False)
    _hparam("lars", False, lambda r: False)
    _hparam("linear_steps", 500, lambda r: 500)
    _hparam("resnet_dropout", 0.0, lambda r: r.choice([0.0, 0.1, 0.5]))
    _hparam("vit_dropout", 0.0, lambda r: r.choice([0.0, 0.1, 0.5]))
    _hparam("class_balanced", False, lambda r: False)
    _hparam("nonlinear_classifier", False, lambda r: bool(r.choice([False, False])))
    if algorithm in ["DANN", "CDANN"]:
        _hparam("mlp_width", 256, lambda r: int(2 ** r.uniform(6, 10)))
        _hparam("mlp_depth", 3, lambda r: int(r.choice([3, 4, 5])))
        _hparam("mlp_dropout", 0.0, lambda r: r.choice([0.0, 0.1, 0.5]))
    if dataset in small_images:
        _hparam("lr", 1e-3, lambda r: 10 ** r.uniform(-4.5, -2.5))
        _hparam("weight_decay", 0.0, lambda r: 0.0)
        _hparam("batch_size", 64, lambda r: int(2 ** r.uniform(3, 9)))
    else:
        _hparam("lr", 5e-5, lambda r: 10 ** r.uniform(-5, -3.5))
        _hparam("weight_decay", 0.0, lambda r: 10 ** r.uniform(-6, -2))
        upper = 5 if dataset == "DomainNet" else 5.5
        _hparam("batch_size", 32, lambda r: int(2 ** r.uniform(3, upper)))
    return hparams


def default_hparams(algorithm, dataset):
    return {a: b for a, (b, c) in _hparams(algorithm, dataset, 0).items()}


def random_hparams(algorithm, dataset, seed):
    return {a: c for a, (b, c) in _hparams(algorithm, dataset, seed).items()}
"""

_STUB_ALGORITHMS = """
import torch

ALGORITHMS = ["ERM"]


def get_algorithm_class(algorithm_name):
    if algorithm_name not in globals():
        raise NotImplementedError("Algorithm not found: {}".format(algorithm_name))
    return globals()[algorithm_name]


class Algorithm(torch.nn.Module):
    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__()
        self.hparams = hparams


class ERM(Algorithm):
    pass
"""


def write_domainbed_stub(root: str | Path, package: str = "domainbed") -> Path:
    """Write a minimal stand-in of DomainBed's ``algorithms``, ``hparams_registry`` and
    ``lib.misc`` modules under ``root/<package>`` and return that folder (for tests: the parts
    :func:`register_with_domainbed` touches, with the same names, call structure, common
    hyper-parameter block and seeding as DomainBed at :data:`DOMAINBED_COMMIT`)."""
    base = Path(root) / package
    (base / "lib").mkdir(parents=True, exist_ok=True)
    (base / "__init__.py").write_text("")
    (base / "lib" / "__init__.py").write_text("")
    (base / "lib" / "misc.py").write_text(textwrap.dedent(_STUB_MISC).lstrip())
    registry = _STUB_REGISTRY.replace("from domainbed.lib", f"from {package}.lib")
    (base / "hparams_registry.py").write_text(textwrap.dedent(registry).lstrip())
    (base / "algorithms.py").write_text(textwrap.dedent(_STUB_ALGORITHMS).lstrip())
    return base
