"""The early-branching network's parts: a shared stem and two trunks cut from one backbone.

A backbone is split after a named stage (``layer1`` by default): the *stem* runs the stages up to
and including it, each *trunk* runs the remaining stages, then global average pooling, flatten and
dropout. Both trunks are independent copies of the same (e.g. ImageNet) weights. Parts keep the
backbone under ``network`` so checkpoint keys read ``base.network.layer1.0.conv1.weight``, as in the
official code.

Two backbone families are supported: ResNet-like models with torchvision or timm child names
(``conv1, bn1, relu|act1, maxpool, layer1..layer4``) and the harness's small-image ``DigitsCNN``
(stages ``block1..block4``; ``layerN`` is accepted as an alias of ``blockN``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from papers_shared.dg.networks import DigitsCNN, ResNetFeaturizer, check_network_switches

__all__ = [
    "BackbonePart",
    "ResNetPart",
    "DigitsCNNPart",
    "DomainMLP",
    "build_projector",
    "projector_width",
    "split_resnet",
    "split_digits_cnn",
    "build_branches",
    "freeze_batchnorm2d",
    "RESNET_HEAD_NAMES",
    "DIGITS_STAGES",
]

# Children of a ResNet-like model that belong to the classification head, not to a stage.
RESNET_HEAD_NAMES = frozenset({"avgpool", "global_pool", "fc", "head", "classifier", "head_drop"})
# DigitsCNN stage -> (conv, norm); each stage is norm(relu(conv(x))).
DIGITS_STAGES: dict[str, tuple[str, str]] = {
    "block1": ("conv1", "bn0"),
    "block2": ("conv2", "bn1"),
    "block3": ("conv3", "bn2"),
    "block4": ("conv4", "bn3"),
}


def freeze_batchnorm2d(module: nn.Module) -> None:
    """Put every BatchNorm2d in eval mode (running statistics frozen; affine params still train)."""
    for child in module.modules():
        if isinstance(child, nn.BatchNorm2d):
            child.eval()


class BackbonePart(nn.Module):
    """Consecutive stages of a backbone; a trunk part (``num_features`` given) also pools.

    stem: x (B, C, H, W) -> (B, C', H', W'); trunk: (B, C', H', W') -> (B, D).
    A trunk with no stage left (split after the last stage, "late branching") owns a
    ``projection: Linear(D, D)`` initialised to the identity, so the two branches can still differ.
    """

    def __init__(
        self,
        network: nn.Module,
        stage_names: Sequence[str],
        num_features: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.network = network
        self.stage_names = list(stage_names)
        self.num_features = num_features
        self.is_trunk = num_features is not None
        if num_features is not None:
            self.dropout = nn.Dropout(dropout)
            if not self.stage_names:
                self.projection = nn.Linear(num_features, num_features)
                nn.init.eye_(self.projection.weight)
                nn.init.zeros_(self.projection.bias)
        freeze_batchnorm2d(self)

    @property
    def n_outputs(self) -> int | None:
        return self.num_features

    def run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stage_names:
            x = self.run_stage(name, x)
        if not self.is_trunk:
            return x
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if hasattr(self, "projection"):
            x = self.projection(x)
        return self.dropout(x)

    def train(self, mode: bool = True) -> BackbonePart:
        super().train(mode)
        freeze_batchnorm2d(self)
        return self


class ResNetPart(BackbonePart):
    """Stages of a torchvision / timm ResNet, run as the model's children of those names."""

    def run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.network, name)(x)


class DigitsCNNPart(BackbonePart):
    """Stages ``block1..block4`` of a :class:`~papers_shared.dg.networks.DigitsCNN`."""

    def run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        conv, norm = DIGITS_STAGES[name]
        return getattr(self.network, norm)(torch.relu(getattr(self.network, conv)(x)))


def _pruned_copy(model: nn.Module, keep: Sequence[str]) -> nn.Module:
    """A deep copy of ``model`` without the children not named in ``keep`` (those are not copied)."""
    dropped = [name for name, _ in model.named_children() if name not in keep]
    memo: dict[int, Any] = {id(getattr(model, name)): None for name in dropped}
    clone = copy.deepcopy(model, memo)
    for name in dropped:
        delattr(clone, name)
    return clone


def split_resnet(
    model: nn.Module,
    split_after: str = "layer1",
    num_features: int | None = None,
    dropout: float = 0.0,
) -> tuple[ResNetPart, ResNetPart]:
    """Split a torchvision or timm ResNet-like model after the child ``split_after``.

    Returns ``(stem, trunk)``, each holding a pruned deep copy of ``model``; the head children
    (``avgpool``/``global_pool``/``fc``...) are dropped. ``num_features`` defaults to timm's
    ``model.num_features`` or torchvision's ``model.fc.in_features``.
    """
    body = [name for name, _ in model.named_children() if name not in RESNET_HEAD_NAMES]
    if split_after not in body:
        raise ValueError(
            f"split_after must name one of the model's stages {body}, got {split_after!r}"
        )
    if num_features is None:
        num_features = getattr(model, "num_features", None)
        fc = getattr(model, "fc", None)
        if num_features is None and isinstance(fc, nn.Linear):
            num_features = fc.in_features
        if num_features is None:
            raise ValueError("cannot infer the feature width; pass num_features")
    cut = body.index(split_after) + 1
    stem = ResNetPart(_pruned_copy(model, body[:cut]), body[:cut])
    trunk = ResNetPart(_pruned_copy(model, body[cut:]), body[cut:], int(num_features), dropout)
    return stem, trunk


def split_digits_cnn(
    model: DigitsCNN, split_after: str = "block1", dropout: float = 0.0
) -> tuple[DigitsCNNPart, DigitsCNNPart]:
    """Split a ``DigitsCNN`` after ``block1..block4`` (``layerN`` means ``blockN``)."""
    split_after = split_after.replace("layer", "block")
    stages = list(DIGITS_STAGES)
    if split_after not in stages:
        raise ValueError(
            f"split_after must be one of {stages} (or layer1..layer4) for the small CNN, got {split_after!r}"
        )
    cut = stages.index(split_after) + 1

    def modules_of(names: Sequence[str]) -> list[str]:
        return [module for name in names for module in DIGITS_STAGES[name]]

    stem = DigitsCNNPart(_pruned_copy(model, modules_of(stages[:cut])), stages[:cut])
    trunk = DigitsCNNPart(
        _pruned_copy(model, modules_of(stages[cut:])), stages[cut:], model.n_outputs, dropout
    )
    return stem, trunk


def build_branches(
    input_shape: tuple[int, ...], hparams: Mapping[str, Any]
) -> tuple[BackbonePart, BackbonePart, BackbonePart]:
    """``(stem, causal trunk, domain trunk)`` for the harness's backbone choice.

    Small images (side <= 64) use ``DigitsCNN(cnn_width)``; larger ones DomainBed's ResNet
    (``resnet18``, ``resnet_pretrained``; frozen BatchNorm2d). Both trunks start from the same weights.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    check_network_switches(hparams)
    split_after = str(hparams.get("split_after", "layer1"))
    dropout = float(hparams.get("resnet_dropout", 0.0))
    if max(input_shape[1:]) <= 64:
        cnn = DigitsCNN(input_shape, width=int(hparams.get("cnn_width", 64)))
        stem, trunk = split_digits_cnn(cnn, split_after, dropout)
    else:
        featurizer = ResNetFeaturizer(input_shape, hparams)
        stem, trunk = split_resnet(featurizer.network, split_after, featurizer.n_outputs, dropout)
    return stem, trunk, copy.deepcopy(trunk)


class DomainMLP(nn.Module):
    """DomainBed's ``MLP``: Linear -> Dropout -> ReLU, (depth - 2) hidden blocks, Linear.

    x: (B, D) -> (B, M). Attribute names (``input``, ``hiddens``, ``output``) match DomainBed.
    """

    def __init__(
        self, n_inputs: int, n_outputs: int, width: int = 256, depth: int = 3, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"mlp_depth must be >= 2 (input and output layers), got {depth}")
        self.input = nn.Linear(n_inputs, width)
        self.dropout = nn.Dropout(dropout)
        self.hiddens = nn.ModuleList([nn.Linear(width, width) for _ in range(depth - 2)])
        self.output = nn.Linear(width, n_outputs)
        self.n_outputs = n_outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dropout(self.input(x)))
        for hidden in self.hiddens:
            x = torch.relu(self.dropout(hidden(x)))
        return self.output(x)


def projector_width(num_features: int) -> int:
    """Hidden width H of the consistency projector: D if D == 2048 else 2 D (official rule)."""
    return num_features if num_features == 2048 else 2 * num_features


def build_projector(num_features: int) -> nn.Sequential:
    """``cdpl``: Linear(D, H) BN ReLU Linear(H, H) BN ReLU Linear(H, D) BN. (B, D) -> (B, D)."""
    hidden = projector_width(num_features)
    return nn.Sequential(
        nn.Linear(num_features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_features),
        nn.BatchNorm1d(num_features),
    )
