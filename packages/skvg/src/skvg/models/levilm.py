"""LeViLM (linguistic-enhanced vision-language matching, two-stage).

Shapes: B batch, N proposals, L tokens of ``"<query>. <knowledge>"``, C backbone channels, d = embed_dim.

1. Proposals (B, N, 4) xyxy on the canvas, from any detector.
2. r_n = normalise(MLP([mean(roi_align(C5, box_n, 7x7, 1/32, aligned)); geometry_n]))   (B, N, d)
3. Token features of the concatenated text (one encoder pass)                        (B, L, H)
4. e = normalise(W · mean of the token features over every mention of the target entity)  (B, d)
   (the entity is the mention cluster that holds the query's head mention; see
   :func:`skvg.data.linguistic.target_mentions`)
5. s_n = <r_n, e> / tau, tau learned in log space (1 / tau <= 100); the answer is argmax_n s_n.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skvg.config import LeViLMConfig
from skvg.models.layers import MLP
from skvg.models.text import TextEncoder
from skvg.models.visual import Backbone

__all__ = ["LeViLM"]


class LeViLM(nn.Module):
    def __init__(self, cfg: LeViLMConfig, text_encoder: TextEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg.backbone, cfg.tiny_width)
        self.textmodel = (
            text_encoder
            if text_encoder is not None
            else TextEncoder.from_pretrained(cfg.text_model)
        )
        in_dim = self.backbone.num_channels + (5 if cfg.use_geometry else 0)
        self.region_mlp = MLP(in_dim, cfg.region_hidden, cfg.embed_dim, 2)
        self.entity_proj = nn.Linear(self.textmodel.hidden_size, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def region_embeddings(self, pixel_values: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S), (B, N, 4) xyxy pixels -> (B, N, d) unit vectors."""
        import torchvision.ops

        if boxes.dim() != 3 or boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be (B, N, 4) xyxy, got {tuple(boxes.shape)}")
        feat = self.backbone(pixel_values)
        batch, num = boxes.shape[:2]
        ops: Any = torchvision.ops  # roi_align is typed as a module here
        rois = ops.roi_align(
            feat,
            [b.to(feat.dtype) for b in boxes],
            output_size=7,
            spatial_scale=1 / 32,
            aligned=True,
        )
        pooled = rois.mean(dim=(2, 3)).view(batch, num, -1)
        if self.cfg.use_geometry:
            size = float(self.cfg.image_size)
            norm = boxes.to(pooled.dtype) / size
            area = ((norm[..., 2] - norm[..., 0]) * (norm[..., 3] - norm[..., 1])).unsqueeze(-1)
            pooled = torch.cat([pooled, norm, area], dim=-1)
        return F.normalize(self.region_mlp(pooled), dim=-1)

    def entity_embedding(
        self, text_ids: torch.Tensor, text_mask: torch.Tensor, entity_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, L) ids, mask and entity-token mask -> (B, d) unit vectors."""
        tokens, _ = self.textmodel(text_ids, text_mask)
        weights = (entity_mask & (text_mask > 0)).to(tokens.dtype).unsqueeze(-1)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(self.entity_proj(pooled), dim=-1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        boxes: torch.Tensor,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor,
        entity_mask: torch.Tensor,
    ) -> torch.Tensor:
        """-> (B, N) scores s_n = <r_n, e> / tau."""
        regions = self.region_embeddings(pixel_values, boxes)
        entity = self.entity_embedding(text_ids, text_mask, entity_mask)
        scale = self.logit_scale.exp().clamp(max=100.0)
        return scale * torch.einsum("bnd,bd->bn", regions, entity)
