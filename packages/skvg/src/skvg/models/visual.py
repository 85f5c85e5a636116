"""TransVG's visual branch: a ResNet with frozen batch norm (C5), a 1x1 projection to d and a DETR
encoder with 2-D sine positions.

Keys follow TransVG / DETR: ``backbone.0.body.*`` (torchvision ResNet names, FrozenBatchNorm2d
buffers), ``input_proj.*``, ``transformer.encoder.layers.{i}.*``. ``"tiny"`` is a small stride-32
net for tests and the CPU demo.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from skvg.models.layers import (
    EncoderHolder,
    PositionEmbeddingSine,
    TinyBackbone,
    TransformerEncoder,
)

__all__ = ["Backbone", "VisualEncoder", "BACKBONES"]

BACKBONES = ("resnet50", "resnet101", "resnet18", "tiny")


class Backbone(nn.Module):
    """``body`` returns C5 as ``{"0": (B, C, H/32, W/32)}``; conv1, bn1 and layer1 stay frozen."""

    def __init__(self, name: str = "resnet50", tiny_width: int = 32) -> None:
        super().__init__()
        if name == "tiny":
            tiny = TinyBackbone(tiny_width)
            self.body: nn.Module = tiny
            self.num_channels = tiny.num_channels
            return
        if name not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")
        import torchvision
        from torchvision.models._utils import IntermediateLayerGetter
        from torchvision.ops import FrozenBatchNorm2d

        resnet = getattr(torchvision.models, name)(weights=None, norm_layer=FrozenBatchNorm2d)
        for pname, param in resnet.named_parameters():
            if not any(pname.startswith(k) for k in ("layer2", "layer3", "layer4")):
                param.requires_grad_(False)
        self.body = IntermediateLayerGetter(resnet, return_layers={"layer4": "0"})
        self.num_channels = 512 if name == "resnet18" else 2048

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.body(pixel_values)["0"]


class VisualEncoder(nn.Module):
    """(B, 3, S, S) pixels + (B, S, S) pad mask -> (N_v, B, d) tokens, (B, N_v) pad mask."""

    def __init__(
        self,
        backbone: str = "resnet50",
        d_model: int = 256,
        num_layers: int = 6,
        nhead: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        tiny_width: int = 32,
    ) -> None:
        super().__init__()
        body = Backbone(backbone, tiny_width)
        # keys backbone.0.body.* as in DETR
        self.backbone = nn.Sequential(body, PositionEmbeddingSine(d_model // 2))
        self.input_proj = nn.Conv2d(body.num_channels, d_model, kernel_size=1)
        self.transformer = EncoderHolder(
            TransformerEncoder(num_layers, d_model, nhead, dim_feedforward, dropout)
        )
        self.num_channels = d_model

    @property
    def body(self) -> Backbone:
        return cast(Backbone, self.backbone[0])

    @property
    def position(self) -> PositionEmbeddingSine:
        return cast(PositionEmbeddingSine, self.backbone[1])

    def forward(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.body(pixel_values)
        mask = F.interpolate(pixel_mask[None].float(), size=feat.shape[-2:]).to(torch.bool)[0]
        pos = self.position(mask, dtype=feat.dtype)
        src = self.input_proj(feat).flatten(2).permute(2, 0, 1)
        pos = pos.flatten(2).permute(2, 0, 1)
        mask = mask.flatten(1)
        out = self.transformer.encoder(src, mask, pos)
        return out, mask

    def c5(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The backbone's (B, C, H/32, W/32) map (LeViLM's region features)."""
        return self.body(pixel_values)
