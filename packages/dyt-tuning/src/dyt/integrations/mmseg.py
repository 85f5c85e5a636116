"""DyT ViT backbone for mmsegmentation >= 1.x (paper section 4.3), with the four-scale neck.

Registered in ``mmseg.registry.MODELS`` as ``DyTViT`` (backbone) and ``DyTEncoderDecoder``
(segmentor adding the backbone's rate loss as ``loss_token``) when :func:`register_mmseg` runs;
``import dyt.integrations.mmseg`` calls it. Needs the ``[mmseg]`` extra (mmcv with ops).

Official layout (under ``backbone.``): timm ViT keys, ``blocks.{i}.attn.relative_position_bias_table``
and buffer ``relative_position_index`` (BEiT-style), ``fpn1.0``, ``fpn1.2``, ``fpn2.0``. As in the
released code the backbone uses the dense masked path and no complete-model distillation; the
segmentor offers it as an option (``complete_distill=True``: complete-model decode loss plus a
pixel-wise KL to the detached complete prediction, the segmentation form of the DyT objective).
"""

from __future__ import annotations

from typing import Any

import torch
from dyt.config import DyTConfig
from dyt.losses import pixel_distillation_kl, rate_loss
from dyt.models.dispatch import dispatch_mode, records_to_aux
from dyt.models.dyt_vit import convert_vit
from torch import nn

__all__ = [
    "DyTSegmentationBackbone",
    "relative_position_index",
    "register_mmseg",
    "segmentation_config",
]


def relative_position_index(grid: tuple[int, int]) -> torch.Tensor:
    """BEiT's (T, T) index into a table of (2H-1)(2W-1) + 3 rows (3 extra for the CLS pairs)."""
    height, width = grid
    coords = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"))
    coords = coords.flatten(1)  # (2, H*W)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (HW, HW, 2)
    relative[:, :, 0] += height - 1
    relative[:, :, 1] += width - 1
    relative[:, :, 0] *= 2 * width - 1
    num_relative = (2 * height - 1) * (2 * width - 1)
    index = torch.zeros(height * width + 1, height * width + 1, dtype=torch.long)
    index[1:, 1:] = relative.sum(-1)
    index[0, :] = num_relative
    index[:, 0] = num_relative + 1
    index[0, 0] = num_relative + 2
    return index


class DyTSegmentationBackbone(nn.Module):
    """DyT ViT returning four maps at strides 4, 8, 16, 32 plus a rate loss.

    forward(images (B, 3, H, W), complete=False) -> tuple of 4 maps (B, C, H/s, W/s); after a
    dispatched forward ``token_loss`` holds ``alpha * (mean(M) - r)^2`` (``complete=True`` runs
    every token through every MLP and leaves ``token_loss`` alone).
    """

    def __init__(
        self,
        img_size: int = 512,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        out_indices: tuple[int, ...] = (3, 5, 7, 11),
        bottleneck: int = 64,
        rate: float = 0.5,
        adapter_scale: float = 0.1,
        num_experts: int = 1,
        alpha: float = 2.0,
        use_rel_pos_bias: bool = True,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        if len(out_indices) != 4:
            raise ValueError(f"out_indices needs 4 block indices, got {out_indices}")
        vit: Any = VisionTransformer(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio, drop_path_rate=drop_path_rate, num_classes=0,
        )  # fmt: skip
        config = DyTConfig(bottleneck=bottleneck, rate=rate, adapter_scale=adapter_scale,
                           num_experts=num_experts, sparse_inference=False)  # fmt: skip
        convert_vit(vit, config)
        if pretrained:
            from dyt.convert import load_backbone

            load_backbone(vit, pretrained)
        # Keep the ViT's parts at the top level so keys match the official ``backbone.blocks...``.
        self.patch_embed, self.cls_token, self.pos_embed = (
            vit.patch_embed,
            vit.cls_token,
            vit.pos_embed,
        )
        self.pos_drop, self.blocks = vit.pos_drop, vit.blocks
        self.grid = tuple(vit.patch_embed.grid_size)
        self.out_indices, self.rate, self.alpha = tuple(out_indices), rate, alpha
        self.use_rel_pos_bias = use_rel_pos_bias
        if use_rel_pos_bias:
            rows = (2 * self.grid[0] - 1) * (2 * self.grid[1] - 1) + 3
            for block in self.blocks:
                block.attn.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
                block.attn.register_buffer("relative_position_index",
                                           relative_position_index(self.grid), persistent=True)  # fmt: skip
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2), nn.GELU(),
            nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2),
        )  # fmt: skip
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2))
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(2)
        for name, param in self.named_parameters():
            frozen = name.startswith(("patch_embed.", "cls_token", "pos_embed")) or (
                name.startswith("blocks.") and "adaptmlp" not in name and "token_select" not in name
                and "relative_position_bias_table" not in name
            )  # fmt: skip
            param.requires_grad_(not frozen)
        self.token_loss = torch.zeros(())

    def _rel_pos_bias(self, block: Any) -> torch.Tensor:
        table = block.attn.relative_position_bias_table
        index = block.attn.relative_position_index
        tokens = index.shape[0]
        return table[index.reshape(-1)].reshape(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)

    def forward(self, images: torch.Tensor, complete: bool = False) -> tuple[torch.Tensor, ...]:
        batch, _, height, width = images.shape
        grid = (height // self.patch_embed.patch_size[0], width // self.patch_embed.patch_size[1])
        if grid != self.grid:
            raise ValueError(f"expected {self.grid[0] * self.patch_embed.patch_size[0]}x"
                             f"{self.grid[1] * self.patch_embed.patch_size[1]} crops (sliding "
                             f"window), got {height}x{width}")  # fmt: skip
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1) + self.pos_embed
        x = self.pos_drop(x)
        features = []
        with dispatch_mode(self, complete=complete, sparse=False) as records:
            for index, block in enumerate(self.blocks):
                bias = self._rel_pos_bias(block).to(x.dtype) if self.use_rel_pos_bias else None
                x = block(x, attn_mask=bias)
                if index in self.out_indices:
                    patches = x[:, 1:].transpose(1, 2).reshape(batch, -1, *grid)
                    features.append(patches)
        if not complete:
            token_select = records_to_aux(records)["token_select"]
            self.token_loss = rate_loss(token_select, self.rate, self.alpha)
        necks = (self.fpn1, self.fpn2, self.fpn3, self.fpn4)
        return tuple(neck(feature) for neck, feature in zip(necks, features))


SEG_DATASETS = {"ade20k": (150, 160_000), "coco_stuff164k": (171, 80_000)}


def segmentation_config(
    dataset: str = "ade20k",
    preset: str = "official",
    num_experts: int = 1,
    complete_distill: bool = False,
    backbone_overrides: dict | None = None,
) -> dict:
    """The paper's UperNet segmentation setup as mmseg >= 1.x config fields (plain dicts).

    Returns ``model``, ``optim_wrapper``, ``param_scheduler`` and ``train_cfg``, to merge with
    mmseg's dataset/runtime ``_base_`` configs. ``preset="official"`` follows the released config
    (relative position bias on, 1500 linear warm-up iters then poly power 1 to 0); ``"paper"``
    follows the paper's table (cosine decay after the same warm-up). 16 images per step
    (8 GPUs x 2), AdamW lr 1e-3 wd 0.05, 160k iters on ADE20K, 80k on COCO-Stuff-164k.
    """
    if dataset not in SEG_DATASETS:
        raise ValueError(f"dataset must be one of {sorted(SEG_DATASETS)}, got {dataset!r}")
    if preset not in ("official", "paper"):
        raise ValueError(f"preset must be 'official' or 'paper', got {preset!r}")
    num_classes, iters = SEG_DATASETS[dataset]
    backbone = dict(type="DyTViT", img_size=512, drop_path_rate=0.1, out_indices=(3, 5, 7, 11),
                    bottleneck=64, rate=0.5, adapter_scale=0.1, num_experts=num_experts,
                    use_rel_pos_bias=True)  # fmt: skip
    backbone.update(backbone_overrides or {})
    width = backbone.get("embed_dim", 768)
    norm = dict(type="SyncBN", requires_grad=True)
    model = dict(
        type="DyTEncoderDecoder",
        complete_distill=complete_distill,
        data_preprocessor=dict(type="SegDataPreProcessor", mean=[127.5] * 3, std=[127.5] * 3,
                               bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
                               size=(backbone["img_size"],) * 2),
        backbone=backbone,
        decode_head=dict(type="UPerHead", in_channels=[width] * 4, in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2, 3, 6), channels=width, dropout_ratio=0.1,
                         num_classes=num_classes, norm_cfg=norm, align_corners=False,
                         loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False,
                                          loss_weight=1.0)),
        auxiliary_head=dict(type="FCNHead", in_channels=width, in_index=2, channels=256,
                            num_convs=1, concat_input=False, dropout_ratio=0.1,
                            num_classes=num_classes, norm_cfg=norm, align_corners=False,
                            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False,
                                             loss_weight=0.4)),
        train_cfg=dict(),
        test_cfg=dict(mode="slide", crop_size=(512, 512), stride=(341, 341)),
    )  # fmt: skip
    warmup = 1500
    decay = (
        dict(type="PolyLR", power=1.0, eta_min=0.0, begin=warmup, end=iters, by_epoch=False)
        if preset == "official"
        else dict(type="CosineAnnealingLR", eta_min=0.0, T_max=iters - warmup, begin=warmup,
                  end=iters, by_epoch=False)
    )  # fmt: skip
    return dict(
        model=model,
        optim_wrapper=dict(
            type="OptimWrapper",
            optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
        ),  # fmt: skip
        param_scheduler=[
            dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=warmup),
            decay,
        ],
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=16_000),
        train_batch_size_per_gpu=2,
    )


def register_mmseg() -> bool:
    """Register ``DyTViT`` and ``DyTEncoderDecoder`` with mmseg; False if mmseg is missing."""
    try:
        from mmengine.model import BaseModule
        from mmseg.models.segmentors import EncoderDecoder
        from mmseg.registry import MODELS
        from mmseg.utils import add_prefix
    except ImportError:
        return False
    if "DyTViT" in MODELS.module_dict:
        return True

    class DyTViT(DyTSegmentationBackbone, BaseModule):
        """The mmseg-registered backbone (an mmengine ``BaseModule``)."""

        def __init__(self, init_cfg: dict | None = None, **kwargs) -> None:
            super().__init__(**kwargs)
            self.init_cfg = init_cfg

    class DyTEncoderDecoder(EncoderDecoder):
        """EncoderDecoder adding the backbone's rate loss as ``loss_token``.

        ``complete_distill=True`` (off by default, as in the release) also runs the complete
        model (no skipping) through the decode head: its decode loss (``complete.*``) and a
        pixel-wise KL from its detached prediction to the dispatched one (``loss_kl``), weighted
        by ``distill_weight``.
        """

        def __init__(
            self, *args, complete_distill: bool = False, distill_weight: float = 1.0, **kwargs
        ) -> None:
            super().__init__(*args, **kwargs)
            self.complete_distill, self.distill_weight = complete_distill, distill_weight

        def loss(self, inputs, data_samples) -> dict:
            if not self.complete_distill:
                losses = super().loss(inputs, data_samples)
                losses["loss_token"] = self.backbone.token_loss
                return losses
            features = self.extract_feat(inputs)
            losses = {"loss_token": self.backbone.token_loss}
            logits = self.decode_head.forward(features)
            losses.update(add_prefix(self.decode_head.loss_by_feat(logits, data_samples), "decode"))
            if self.with_auxiliary_head:
                losses.update(self._auxiliary_head_forward_train(features, data_samples))
            complete = self.backbone(inputs, complete=True)
            if self.with_neck:
                complete = self.neck(complete)
            complete_logits = self.decode_head.forward(complete)
            complete_losses = self.decode_head.loss_by_feat(complete_logits, data_samples)
            losses.update(add_prefix(complete_losses, "complete"))
            losses["loss_kl"] = self.distill_weight * pixel_distillation_kl(logits, complete_logits)
            return losses

    MODELS.register_module(name="DyTViT", module=DyTViT)
    MODELS.register_module(name="DyTEncoderDecoder", module=DyTEncoderDecoder)
    return True


register_mmseg()
