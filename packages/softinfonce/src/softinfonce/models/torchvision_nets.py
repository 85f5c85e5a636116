"""Optional torchvision-based encoders: a ResNet-18-style 2D audio net and torchvision's R(2+1)D-18.

Not imported by ``softinfonce`` or ``softinfonce.models``: :func:`softinfonce.train.build_model`
imports this module only when ``ModelConfig.audio_arch="resnet18"`` or
``video_arch="torchvision"`` asks for it. Both return the pooled backbone feature (no classifier),
like the AVID encoders, so the projection heads and the loss are unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.video import r2plus1d_18

__all__ = ["AudioResNet18", "TorchvisionR2Plus1D18"]

Pool = Literal["max", "avg"]


def _pool(kind: Pool, dims: int) -> nn.Module:
    if kind not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {kind!r}")
    if dims == 2:
        return nn.AdaptiveMaxPool2d(1) if kind == "max" else nn.AdaptiveAvgPool2d(1)
    return nn.AdaptiveMaxPool3d(1) if kind == "max" else nn.AdaptiveAvgPool3d(1)


class AudioResNet18(nn.Module):
    """torchvision's ResNet-18 on a 1-channel spectrogram, without the classifier.

    ``x: (B, 1, time, freq) -> (B, 512)``. ``pool="max"`` (default; our choice, the paper does not say) matches the
    AVID encoders' global max pool; ``"avg"`` is torchvision's. 11,170,240 parameters.
    """

    def __init__(self, in_channels: int = 1, pool: Pool = "max") -> None:
        super().__init__()
        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.avgpool = _pool(pool, 2)  # type: ignore[assignment]
        net.fc = nn.Identity()  # type: ignore[assignment]
        self.net = net
        self.in_channels = in_channels
        self.num_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected audio (B, {self.in_channels}, time, freq), got {tuple(x.shape)}"
            )
        return self.net(x)


class TorchvisionR2Plus1D18(nn.Module):
    """torchvision's ``r2plus1d_18`` (with its parameter-matching mid widths), no classifier.

    ``x: (B, 3, T, H, W) -> (B, 512)``; 31,300,125 parameters (31,505,325 with the 400-way fc).
    """

    def __init__(self, pool: Pool = "avg") -> None:
        super().__init__()
        net = r2plus1d_18(weights=None)
        net.avgpool = _pool(pool, 3)  # type: ignore[assignment]
        net.fc = nn.Identity()  # type: ignore[assignment]
        self.net = net
        self.num_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected video (B, 3, T, H, W), got {tuple(x.shape)}")
        return self.net(x)
