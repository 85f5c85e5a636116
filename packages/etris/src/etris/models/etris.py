"""The ETRIS model: frozen open_clip towers + Bridger + HA neck + GA decoder + projector."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import nn

from etris.config import ETRISConfig
from etris.models.bridger import Bridger
from etris.models.heads import GADecoder, HANeck, Projector
from etris.models.towers import (
    add_connect,
    create_clip,
    dense_attention_pool,
    text_embed,
    text_outputs,
    tower_dims,
    vit_embed,
)

__all__ = [
    "ETRISFeatures",
    "ETRIS",
    "register_etris",
    "create_etris",
    "list_etris",
    "ETRIS_VARIANTS",
]


class ETRISFeatures(NamedTuple):
    """Backbone outputs. feats: three image maps (B, C_i, H_i, W_i) (RN50 at 416: 512x52x52,
    1024x26x26, 1024x13x13; ViT-B/16: 768x26x26, 768x26x26, 512x26x26); words: ln_final text
    features (B, L, C_t); state: projected sentence feature (B, D_out)."""

    feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    words: torch.Tensor
    state: torch.Tensor


class ETRIS(nn.Module):
    """Referring image segmentation with frozen CLIP towers bridged by trainable adapters.

    forward(image: (B, 3, H, W), ids: (B, L) token ids, 0 = padding) -> logits (B, 1, H/4, W/4).
    Only the Bridger, neck, decoder, projector and the towers' positional embeddings train.
    """

    def __init__(self, config: ETRISConfig | None = None) -> None:
        super().__init__()
        config = config or ETRISConfig()
        self.config = config
        self.backbone: Any = create_clip(
            config.clip_model, config.image_size, config.clip_config, config.pretrained
        )
        dims = tower_dims(self.backbone)
        self.is_vit: bool = dims["is_vit"]
        if not self.is_vit:
            add_connect(self.backbone.visual.attnpool)
        if dims["text_width"] != config.vis_dim:
            raise ValueError(
                f"vis_dim must equal the text tower width (word features enter the decoder "
                f"unprojected), got vis_dim={config.vis_dim} and text width {dims['text_width']}"
            )
        num_text = len(self.backbone.transformer.resblocks)
        if num_text % 3:
            raise ValueError(f"the text tower needs a multiple of 3 blocks, got {num_text}")
        if self.is_vit and len(self.backbone.visual.transformer.resblocks) != num_text:
            raise ValueError(
                "the ViT tower must have as many blocks as the text tower, got "
                f"{len(self.backbone.visual.transformer.resblocks)} and {num_text}"
            )
        if config.word_len > self.backbone.positional_embedding.shape[0]:
            raise ValueError(
                f"word_len {config.word_len} exceeds the text context length "
                f"{self.backbone.positional_embedding.shape[0]}"
            )
        # Bridger fuses after text blocks 3, 7, 11 (for 12 blocks) and the matching image stage
        self.fusion_blocks = tuple(num_text // 3 * (s + 1) - 1 for s in range(3))
        self.bridger: Bridger | None = None
        if config.use_bridger:
            interactor = config.interactor or ("gated" if self.is_vit else "full")
            heads = config.bridger_heads or (8 if self.is_vit else 4)
            self.bridger = Bridger(
                dims["stage_channels"],
                dims["text_width"],
                dim=config.bridger_dim,
                is_vit=self.is_vit,
                interactor=interactor,
                num_heads=heads,
                dropout=config.bridger_dropout,
            )
        strides = (1, 1, 1) if self.is_vit else (2, 1, 2)
        self.neck = HANeck(
            dims["fpn_in"], dims["out_dim"], config.vis_dim, strides, config.num_heads
        )
        self.decoder = GADecoder(
            config.num_layers, config.vis_dim, config.num_heads, config.dim_ffn, config.dropout
        )
        self.proj = Projector(dims["out_dim"], config.vis_dim)
        self.freeze_backbone()

    # --- freezing and train / eval behaviour -------------------------------------------------
    def freeze_backbone(self) -> None:
        """Freeze every CLIP weight except positional embeddings (and ``connect`` if asked)."""
        for name, param in self.backbone.named_parameters():
            trainable = self.config.train_positional and "positional_embedding" in name
            trainable = trainable or (self.config.train_connect and ".attnpool.connect." in name)
            param.requires_grad_(trainable)

    def train(self, mode: bool = True) -> ETRIS:
        """As nn.Module.train; with backbone_bn="eval" the backbone's BatchNorms stay in eval."""
        super().train(mode)
        if mode and self.config.backbone_bn == "eval":
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Exact counts: Bridger, neck, decoder, projector, trainable total, backbone (incl. connect)."""

        def count(module: nn.Module | None, trainable_only: bool = False) -> int:
            if module is None:
                return 0
            return sum(
                p.numel() for p in module.parameters() if p.requires_grad or not trainable_only
            )

        backbone_total = count(self.backbone)
        backbone_trainable = count(self.backbone, trainable_only=True)
        connect = 0 if self.is_vit else count(self.backbone.visual.attnpool.connect)
        image_tower = count(self.backbone.visual)
        return {
            "bridger": count(self.bridger),
            "neck": count(self.neck),
            "decoder": count(self.decoder),
            "proj": count(self.proj),
            "backbone_trainable": backbone_trainable,
            "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "backbone": backbone_total,
            "backbone_frozen": backbone_total - backbone_trainable,
            "image_tower": image_tower,
            "connect": connect,
        }

    # --- forward -----------------------------------------------------------------------------
    def forward_features(self, image: torch.Tensor, ids: torch.Tensor) -> ETRISFeatures:
        """Step both towers block by block, fusing through the Bridger at the three stages."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
        if ids.ndim != 2 or ids.shape[0] != image.shape[0]:
            raise ValueError(
                f"ids must be (B, L) with the image's batch {image.shape[0]}, got {tuple(ids.shape)}"
            )
        clip = self.backbone
        visual = clip.visual
        txt, attn_mask = text_embed(clip, ids)
        attn_mask = attn_mask.to(txt.dtype)
        feats: list[torch.Tensor] = []
        prev: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.is_vit:
            vis = vit_embed(visual, image)
            side = visual.grid_size[0]
        else:
            vis = visual.layer1(visual.stem(image.to(visual.conv1.weight.dtype)))
            side = 0
        rn_layers = [] if self.is_vit else [visual.layer2, visual.layer3, visual.layer4]
        for i, text_block in enumerate(clip.transformer.resblocks):
            txt = text_block(txt, attn_mask=attn_mask)
            if self.is_vit:
                vis = visual.transformer.resblocks[i](vis)
            if i not in self.fusion_blocks:
                continue
            stage = self.fusion_blocks.index(i)
            if not self.is_vit:
                vis = rn_layers[stage](vis)
            if self.bridger is not None:
                if self.is_vit:
                    patches = vis[:, 1:].transpose(1, 2).reshape(vis.shape[0], -1, side, side)
                    patches, txt, prev = self.bridger.fuse(stage, patches, txt, prev)
                    vis = torch.cat([vis[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)
                else:
                    vis, txt, prev = self.bridger.fuse(stage, vis, txt, prev)
            if stage < 2:
                feats.append(self._as_map(vis, side))
        if self.is_vit:
            out = visual.ln_post(vis[:, 1:]) @ visual.proj
            feats.append(out.transpose(1, 2).reshape(out.shape[0], -1, side, side))
        else:
            feats.append(dense_attention_pool(visual.attnpool, vis))
        words, state = text_outputs(clip, txt, ids)
        return ETRISFeatures((feats[0], feats[1], feats[2]), words, state)

    def _as_map(self, vis: torch.Tensor, side: int) -> torch.Tensor:
        if not self.is_vit:
            return vis
        return vis[:, 1:].transpose(1, 2).reshape(vis.shape[0], -1, side, side)

    def forward(self, image: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(image, ids)
        pad_mask = ids == 0
        fused = self.neck(features.feats, features.state)
        fused = self.decoder(fused, features.words, pad_mask)
        return self.proj(fused, features.state)


# --- registry ----------------------------------------------------------------------------------
_REGISTRY: dict[str, Callable[..., ETRIS]] = {}

_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 12}
_TINY = {
    "image_size": 64,
    "word_len": 8,
    "vis_dim": 32,
    "num_heads": 4,
    "dim_ffn": 32,
    "bridger_dim": 16,
}

ETRIS_VARIANTS: dict[str, dict[str, Any]] = {
    "etris_rn50": {"clip_model": "RN50-quickgelu"},
    "etris_rn101": {"clip_model": "RN101-quickgelu"},
    "etris_vit_b16": {"clip_model": "ViT-B-16-quickgelu"},
    # tiny random-weight variants for tests (64 px, 12 + 12 blocks, widths 8-48)
    "etris_test_rn": {
        "clip_model": "test-rn",
        "clip_config": {
            "embed_dim": 32,
            "quick_gelu": True,
            "vision_cfg": {
                "image_size": 64,
                "layers": [1, 1, 1, 1],
                "width": 8,
                "patch_size": None,
            },
            "text_cfg": _TINY_TEXT,
        },
        **_TINY,
    },
    "etris_test_vit": {
        "clip_model": "test-vit",
        "clip_config": {
            "embed_dim": 32,
            "quick_gelu": True,
            "vision_cfg": {
                "image_size": 64,
                "layers": 12,
                "width": 48,
                "patch_size": 16,
                "head_width": 16,
            },
            "text_cfg": _TINY_TEXT,
        },
        **_TINY,
    },
}


def register_etris(name: str) -> Callable[[Callable[..., ETRIS]], Callable[..., ETRIS]]:
    """Register a factory ``fn(**overrides) -> ETRIS`` under ``name``."""

    def wrap(fn: Callable[..., ETRIS]) -> Callable[..., ETRIS]:
        if name in _REGISTRY:
            raise ValueError(f"ETRIS variant {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_etris() -> list[str]:
    return sorted(_REGISTRY)


def create_etris(name: str, **overrides: Any) -> ETRIS:
    """Build a registered variant; keyword overrides replace ETRISConfig fields (caller wins)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown ETRIS variant {name!r}; valid: {list_etris()}")
    return _REGISTRY[name](**overrides)


def _make_factory(name: str) -> None:
    @register_etris(name)
    def factory(**overrides: Any) -> ETRIS:
        config = replace(ETRISConfig(), **{**copy.deepcopy(ETRIS_VARIANTS[name]), **overrides})
        return ETRIS(config)

    factory.__name__ = name


for _name in ETRIS_VARIANTS:
    _make_factory(_name)
