"""DyT models: layers, the converted timm ViT, the video model, the mmseg backbone."""

from dyt.models.dyt_vit import (
    AttnDispatchBlock,
    AttnMLPDispatchBlock,
    DyTBlock,
    DyTVisionTransformer,
    LayerDispatchBlock,
    convert_vit,
    is_dyt_model,
    trainable_state_dict,
)
from dyt.models.layers import Adapter, MoEAdapter, TokenDispatcher, gumbel_sigmoid_mask

__all__ = [
    "Adapter",
    "AttnDispatchBlock",
    "AttnMLPDispatchBlock",
    "DyTBlock",
    "DyTVisionTransformer",
    "LayerDispatchBlock",
    "MoEAdapter",
    "TokenDispatcher",
    "convert_vit",
    "gumbel_sigmoid_mask",
    "is_dyt_model",
    "trainable_state_dict",
]
