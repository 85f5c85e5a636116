"""mmsegmentation backbone ``GroupMixFormer`` (registered in ``mmseg.registry.MODELS``).

Needs the ``groupmixformer[mmseg]`` extra (mmsegmentation + a full mmcv with compiled ops).
Dense mode as released: the four stage maps (B, C_i, H/2^(i+2), W/2^(i+2)), no extra norms, no
``norm4``/``head``. ``pretrained`` (or ``init_cfg=dict(type='Pretrained', checkpoint=...)``) loads
a classification checkpoint in the released ``{'model': ...}`` format, dropping ``norm4.*``/``head.*``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import torch
from mmseg.registry import MODELS
from torch import nn

from groupmixformer.config import GroupMixFormerConfig, get_config
from groupmixformer.convert import load_checkpoint
from groupmixformer.models import GroupMixFormer

__all__ = ["GroupMixFormerBackbone"]

logger = logging.getLogger(__name__)


@MODELS.register_module(name="GroupMixFormer")
class GroupMixFormerBackbone(GroupMixFormer):
    """GroupMixFormer for dense prediction.

    Args:
        arch: 'miny' | 'tiny' | 'small' | 'base' | 'large', or a dict of
            :class:`~groupmixformer.config.GroupMixFormerConfig` fields.
        in_channels: input channels.
        out_indices: which stage maps to return.
        drop_path_rate: overrides the variant's rate when given.
        frozen_stages: stages 0..frozen_stages (and the stem) are frozen; -1 freezes nothing.
        norm_eval: keep every BatchNorm in eval mode during training.
        pretrained: path of a classification checkpoint (deprecated mmseg style; prefer init_cfg).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)``.
    """

    def __init__(
        self,
        arch: str | dict[str, Any] = "base",
        in_channels: int = 3,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_path_rate: float | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pretrained: str | None = None,
        init_cfg: dict[str, Any] | None = None,
    ) -> None:
        config = get_config(arch) if isinstance(arch, str) else GroupMixFormerConfig(**arch)
        overrides: dict[str, Any] = {"in_chans": in_channels, "num_classes": 0}
        if drop_path_rate is not None:
            overrides["drop_path_rate"] = drop_path_rate
        config = config.replace(**overrides)
        super().__init__(**config.to_dict(), backbone_only=True)
        self.out_indices = tuple(out_indices)
        if not self.out_indices or any(not 0 <= i < 4 for i in self.out_indices):
            raise ValueError(f"out_indices must be within 0..3, got {out_indices}")
        if not -1 <= frozen_stages < 4:
            raise ValueError(f"frozen_stages must be in -1..3, got {frozen_stages}")
        if pretrained is not None and init_cfg is not None:
            raise ValueError("give either pretrained or init_cfg, not both")
        if pretrained is not None:
            init_cfg = {"type": "Pretrained", "checkpoint": pretrained}
        if init_cfg is not None and init_cfg.get("type") != "Pretrained":
            raise ValueError(f"init_cfg type must be 'Pretrained', got {init_cfg.get('type')!r}")
        self.init_cfg = init_cfg
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._freeze_stages()

    def init_weights(self) -> None:
        """Called by mmengine after building: load the classification checkpoint if any."""
        if self.init_cfg is None:
            return
        report = load_checkpoint(self, self.init_cfg["checkpoint"])
        logger.info("GroupMixFormer backbone: ignored %d classifier keys", len(report.unexpected))

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules: list[nn.Module] = [self.conv_stem]
        for i in range(self.frozen_stages + 1):
            modules += [self.patch_embed_layers[i], self.groupmixformer_backbone[i]]
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> GroupMixFormerBackbone:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        """x: (B, C, H, W) -> stage maps at ``out_indices``."""
        maps = self.forward_intermediates(
            x, indices=list(self.out_indices), intermediates_only=True
        )
        return tuple(cast(list[torch.Tensor], maps))
