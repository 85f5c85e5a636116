"""Featurizers and classifiers of the DomainBed harness."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "ResNetFeaturizer",
    "DigitsCNN",
    "build_featurizer",
    "build_classifier",
    "check_network_switches",
]

# DomainBed backbone switches these networks do not implement: true is refused, not ignored.
UNSUPPORTED_BACKBONES = ("vit", "dinov2")


def check_network_switches(hparams: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when ``hparams`` asks for a DomainBed backbone we do not build."""
    asked = [name for name in UNSUPPORTED_BACKBONES if bool(hparams.get(name, False))]
    if asked:
        raise ValueError(
            f"hparams {asked} ask for a backbone these algorithms do not implement; only the "
            "DomainBed ResNet-18/50 (resnet18) and the small-image CNN are available"
        )


class ResNetFeaturizer(nn.Module):
    """DomainBed's ResNet: torchvision ResNet-18/50 without ``fc``, pooled features, dropout.

    All BatchNorm2d layers stay in eval mode during training (running statistics frozen; affine
    parameters still train). Attribute names (``network``, ``dropout``, ``n_outputs``) match
    DomainBed so its ``featurizer.network.*`` checkpoint keys load unchanged.

    x: (B, C, H, W) -> (B, D), D = 512 (ResNet-18) or 2048 (ResNet-50).
    """

    def __init__(self, input_shape: tuple[int, ...], hparams: Mapping[str, Any]) -> None:
        super().__init__()
        import torchvision

        use_resnet18 = bool(hparams.get("resnet18", False))
        pretrained = bool(hparams.get("resnet_pretrained", True))
        arch = "resnet18" if use_resnet18 else "resnet50"
        weights = "IMAGENET1K_V1" if pretrained else None
        try:
            self.network = getattr(torchvision.models, arch)(weights=weights)
        except OSError as err:  # URLError is an OSError: no cached weights and no network
            raise RuntimeError(
                f"could not load torchvision {arch} {weights} weights ({err}). Put the file in "
                f"$TORCH_HOME/hub/checkpoints or set hparams resnet_pretrained=false."
            ) from err
        self.n_outputs: int = 512 if use_resnet18 else 2048
        in_chans = input_shape[0]
        if in_chans != 3:
            old = self.network.conv1.weight.data.clone()
            self.network.conv1 = nn.Conv2d(
                in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False
            )
            for i in range(in_chans):
                self.network.conv1.weight.data[:, i] = old[:, i % 3]
        self.network.fc = nn.Identity()
        self.dropout = nn.Dropout(float(hparams.get("resnet_dropout", 0.0)))
        self.freeze_bn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.network(x))

    def train(self, mode: bool = True) -> ResNetFeaturizer:
        super().train(mode)
        self.freeze_bn()
        return self

    def freeze_bn(self) -> None:
        for module in self.network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


class DigitsCNN(nn.Module):
    """DomainBed's MNIST_CNN with a configurable width, for small images.

    Four 3x3 convs (width, 2w stride 2, 2w, 2w), each ReLU + GroupNorm(8), then global average
    pooling. x: (B, C, H, W) -> (B, 2 * width).
    """

    def __init__(self, input_shape: tuple[int, ...], width: int = 64) -> None:
        super().__init__()
        if width % 8:
            raise ValueError(f"cnn_width must be divisible by 8 (GroupNorm groups), got {width}")
        in_chans, wide = input_shape[0], 2 * width
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, padding=1)
        self.conv2 = nn.Conv2d(width, wide, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(wide, wide, 3, 1, padding=1)
        self.conv4 = nn.Conv2d(wide, wide, 3, 1, padding=1)
        self.bn0 = nn.GroupNorm(8, width)
        self.bn1 = nn.GroupNorm(8, wide)
        self.bn2 = nn.GroupNorm(8, wide)
        self.bn3 = nn.GroupNorm(8, wide)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.n_outputs: int = wide

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn0(torch.relu(self.conv1(x)))
        x = self.bn1(torch.relu(self.conv2(x)))
        x = self.bn2(torch.relu(self.conv3(x)))
        x = self.bn3(torch.relu(self.conv4(x)))
        return self.avgpool(x).flatten(1)


def build_featurizer(
    input_shape: tuple[int, ...], hparams: Mapping[str, Any]
) -> ResNetFeaturizer | DigitsCNN:
    """Small images (side <= 64) get ``DigitsCNN``; larger ones the DomainBed ResNet."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    check_network_switches(hparams)
    if max(input_shape[1:]) <= 64:
        return DigitsCNN(input_shape, width=int(hparams.get("cnn_width", 64)))
    return ResNetFeaturizer(input_shape, hparams)


def build_classifier(in_features: int, out_features: int, is_nonlinear: bool = False) -> nn.Module:
    """DomainBed's ``Classifier``: a Linear layer, or a 3-layer MLP when ``is_nonlinear``."""
    if is_nonlinear:
        return nn.Sequential(
            nn.Linear(in_features, in_features // 2),
            nn.ReLU(),
            nn.Linear(in_features // 2, in_features // 4),
            nn.ReLU(),
            nn.Linear(in_features // 4, out_features),
        )
    return nn.Linear(in_features, out_features)
