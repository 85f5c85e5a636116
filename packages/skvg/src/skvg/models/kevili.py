"""KeViLI (knowledge-embedded vision-language interaction) and the TransVG layout it extends.

Shapes: B batch, N_v = (S / 32)^2 visual tokens, L_q query tokens, L_k knowledge tokens, d = hidden_dim.

1. V = visu_proj(visual_encoder(pixels))                         (N_v, B, d)
2. Q = text_proj(text(query)), K = know_proj(text(knowledge))   (L_q, B, d), (L_k, B, d)
3. knowledge embedding, "joint": the first N_v outputs of ke_layers encoder layers over [V; K] with
   learned positions ``ke_pos_embed`` (N_v + L_k, d) and key padding [visual pad; knowledge pad];
   "cross": ke_layers blocks of V cross-attending to K. The knowledge tokens themselves never reach
   step 4.
4. TransVG interaction over [REG; Q; V'] with learned positions ``vl_pos_embed`` (1 + L_q + N_v, d).
5. box = sigmoid(MLP(REG output))                                (B, 4) normalised (cx, cy, w, h)

Positions are added to queries and keys only (post-norm DETR layers); weight matrices of the
transformers start xavier-uniform. With ``ke_layers = 0`` the model is TransVG on the query alone and
loads TransVG checkpoints (``visumodel.*``, ``textmodel.bert.*``, ``visu_proj``, ``text_proj``,
``vl_pos_embed``, ``reg_token``, ``vl_transformer.encoder.layers.*``, ``bbox_embed.layers.*``);
KeViLI adds ``ke_encoder.*``, ``ke_pos_embed`` and ``know_proj``.
"""

from __future__ import annotations

import torch
from torch import nn

from skvg.config import KeViLIConfig
from skvg.models.layers import MLP, CrossEncoder, EncoderHolder, TransformerEncoder
from skvg.models.text import TextEncoder
from skvg.models.visual import VisualEncoder

__all__ = ["TransVG", "KeViLI"]


class TransVG(nn.Module):
    """TransVG (query-only grounding); the state-dict layout KeViLI keeps."""

    def __init__(self, cfg: KeViLIConfig, text_encoder: TextEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_dim
        self.visumodel = VisualEncoder(
            cfg.backbone,
            d,
            cfg.visual_layers,
            cfg.nhead,
            cfg.dim_feedforward,
            cfg.dropout,
            cfg.tiny_width,
        )
        self.textmodel = (
            text_encoder
            if text_encoder is not None
            else TextEncoder.from_pretrained(cfg.text_model)
        )
        self.visu_proj = nn.Linear(d, d)
        self.text_proj = nn.Linear(self.textmodel.hidden_size, d)
        self.num_visu_token = cfg.num_visual_tokens
        self.vl_pos_embed = nn.Embedding(1 + cfg.max_query_len + self.num_visu_token, d)
        self.reg_token = nn.Embedding(1, d)
        self.vl_transformer = EncoderHolder(
            TransformerEncoder(cfg.vl_layers, d, cfg.nhead, cfg.dim_feedforward, cfg.dropout)
        )
        self.bbox_embed = MLP(d, d, 4, 3)

    def _check(self, pixel_values: torch.Tensor, query_ids: torch.Tensor) -> None:
        size = self.cfg.image_size
        if pixel_values.dim() != 4 or pixel_values.shape[-2:] != (size, size):
            raise ValueError(
                f"pixel_values must be (B, 3, {size}, {size}), got {tuple(pixel_values.shape)}"
            )
        if query_ids.shape[1] > self.cfg.max_query_len:
            raise ValueError(
                f"query has {query_ids.shape[1]} tokens, more than max_query_len={self.cfg.max_query_len}"
            )

    def encode_visual(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        visu, pad = self.visumodel(pixel_values, pixel_mask)
        return self.visu_proj(visu), pad

    def interact(
        self,
        visu: torch.Tensor,
        visu_pad: torch.Tensor,
        query_ids: torch.Tensor,
        query_mask: torch.Tensor,
    ) -> torch.Tensor:
        batch = visu.shape[1]
        q, q_pad = self.textmodel(query_ids, query_mask)
        q = self.text_proj(q).permute(1, 0, 2)
        lq = q.shape[0]
        reg = self.reg_token.weight.unsqueeze(1).expand(-1, batch, -1)
        src = torch.cat([reg, q, visu], dim=0)
        pad = torch.cat(
            [torch.zeros(batch, 1, dtype=torch.bool, device=visu.device), q_pad, visu_pad], dim=1
        )
        pos_table = self.vl_pos_embed.weight
        start = 1 + self.cfg.max_query_len
        pos = torch.cat([pos_table[: 1 + lq], pos_table[start : start + visu.shape[0]]], dim=0)
        out = self.vl_transformer.encoder(
            src, pad, pos.unsqueeze(1).expand(-1, batch, -1).to(src.dtype)
        )
        return self.bbox_embed(out[0]).sigmoid()

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor,
        query_ids: torch.Tensor,
        query_mask: torch.Tensor,
        know_ids: torch.Tensor | None = None,
        know_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """-> (B, 4) normalised (cx, cy, w, h) on the canvas; the knowledge is ignored."""
        self._check(pixel_values, query_ids)
        visu, pad = self.encode_visual(pixel_values, pixel_mask)
        return self.interact(visu, pad, query_ids, query_mask)


class KeViLI(TransVG):
    """TransVG with the knowledge passage fused into the visual tokens before the query sees them."""

    def __init__(
        self,
        cfg: KeViLIConfig,
        text_encoder: TextEncoder | None = None,
        knowledge_encoder: TextEncoder | None = None,
    ) -> None:
        super().__init__(cfg, text_encoder)
        d = cfg.hidden_dim
        self.knowmodel: TextEncoder | None = None
        if cfg.ke_layers > 0:
            if not cfg.share_text_encoder:
                self.knowmodel = (
                    knowledge_encoder
                    if knowledge_encoder is not None
                    else TextEncoder.from_pretrained(cfg.text_model)
                )
            hidden = (self.knowmodel or self.textmodel).hidden_size
            self.know_proj = nn.Linear(hidden, d)
            if cfg.knowledge_fusion == "joint":
                self.ke_pos_embed = nn.Embedding(self.num_visu_token + cfg.max_knowledge_len, d)
                self.ke_encoder: TransformerEncoder | CrossEncoder = TransformerEncoder(
                    cfg.ke_layers, d, cfg.nhead, cfg.dim_feedforward, cfg.dropout
                )
            else:
                self.ke_encoder = CrossEncoder(
                    cfg.ke_layers, d, cfg.nhead, cfg.dim_feedforward, cfg.dropout
                )

    def embed_knowledge(
        self,
        visu: torch.Tensor,
        visu_pad: torch.Tensor,
        know_ids: torch.Tensor,
        know_mask: torch.Tensor,
    ) -> torch.Tensor:
        """(N_v, B, d) visual tokens -> knowledge-embedded visual tokens of the same shape."""
        if know_ids.shape[1] > self.cfg.max_knowledge_len:
            raise ValueError(
                f"knowledge has {know_ids.shape[1]} tokens, more than max_knowledge_len={self.cfg.max_knowledge_len}"
            )
        encoder = self.knowmodel or self.textmodel
        k, k_pad = encoder(know_ids, know_mask)
        k = self.know_proj(k).permute(1, 0, 2)
        batch, nv = visu.shape[1], visu.shape[0]
        if self.cfg.knowledge_fusion == "joint":
            src = torch.cat([visu, k], dim=0)
            pad = torch.cat([visu_pad, k_pad], dim=1)
            table = self.ke_pos_embed.weight
            pos = torch.cat(
                [table[:nv], table[self.num_visu_token : self.num_visu_token + k.shape[0]]], dim=0
            )
            assert isinstance(self.ke_encoder, TransformerEncoder)
            out = self.ke_encoder(src, pad, pos.unsqueeze(1).expand(-1, batch, -1).to(src.dtype))
            return out[:nv]
        assert isinstance(self.ke_encoder, CrossEncoder)
        return self.ke_encoder(visu, k, k_pad)

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor,
        query_ids: torch.Tensor,
        query_mask: torch.Tensor,
        know_ids: torch.Tensor | None = None,
        know_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """-> (B, 4) normalised (cx, cy, w, h) on the padded canvas."""
        self._check(pixel_values, query_ids)
        visu, pad = self.encode_visual(pixel_values, pixel_mask)
        if self.cfg.ke_layers > 0:
            if know_ids is None or know_mask is None:
                raise ValueError("KeViLI with ke_layers > 0 needs know_ids and know_mask")
            visu = self.embed_knowledge(visu, pad, know_ids, know_mask)
        return self.interact(visu, pad, query_ids, query_mask)
