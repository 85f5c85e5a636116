"""FLOPs in the papers' convention, counted without weights on the meta device.

``papers_shared.counting.count_flops`` counts matmuls and convolutions (one multiply-add = one
FLOP). The published GroupMixFormer figures come from fvcore, which also counts normalisation
layers (LayerNorm 5 per element with affine, eval BatchNorm 2 per element); ``with_norms`` adds
those so the totals can be compared with the spec's column.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from groupmixformer.config import GroupMixFormerConfig
from groupmixformer.models.groupmixformer import GroupMixFormer
from papers_shared.counting import count_flops

__all__ = ["ModelFlops", "model_flops"]


@dataclass(frozen=True)
class ModelFlops:
    matmul_conv: int  # papers_shared.count_flops: matmuls + convolutions
    norms: int  # fvcore's count for LayerNorm / BatchNorm

    @property
    def with_norms(self) -> int:
        return self.matmul_conv + self.norms


def model_flops(
    model_or_config: GroupMixFormer | GroupMixFormerConfig, image_size: int | tuple[int, int] = 224
) -> ModelFlops:
    """FLOPs of one image through the release's op order (the fused eval path multiplies by
    zero-padded kernel taps and would over-count). A config is counted on the meta device."""
    if isinstance(model_or_config, GroupMixFormerConfig):
        with torch.device("meta"):
            model = GroupMixFormer.from_config(model_or_config)
    else:
        model = model_or_config
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    param = next(model.parameters())
    x = torch.zeros(1, model.in_chans, height, width, device=param.device, dtype=param.dtype)
    was_training = model.training
    norm_flops = 0

    def count_norm(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: object) -> None:
        nonlocal norm_flops
        norm_flops += inputs[0].numel() * (5 if isinstance(module, nn.LayerNorm) else 2)

    model.eval()
    model.set_fused_eval(False)
    try:
        total = count_flops(model, x).total
        hooks = [
            m.register_forward_hook(count_norm)
            for m in model.modules()
            if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d))
        ]
        with torch.no_grad():
            model(x)
        for hook in hooks:
            hook.remove()
    finally:
        model.set_fused_eval(True)
        model.train(was_training)
    return ModelFlops(matmul_conv=total, norms=norm_flops)
