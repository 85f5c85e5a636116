"""Tiny MLP encoders for CPU demos and tests (the toy scale of the demo)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLPEncoder"]


class MLPEncoder(nn.Module):
    """Flatten -> Linear -> ReLU -> Linear (no normalisation: samples stay independent).

    ``x: (B, *in_shape) -> (B, num_features)``.
    """

    def __init__(self, in_shape: Sequence[int], hidden: int = 256, num_features: int = 128) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        in_features = 1
        for size in self.in_shape:
            in_features *= size
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_features),
        )
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"expected input (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}"
            )
        return self.net(x)
