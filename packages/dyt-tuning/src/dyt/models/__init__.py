"""DyT models: layers, the converted timm ViT and Swin, the video model, the mmseg backbone."""

from dyt.models.dyt_swin import DyTSwinTransformer, convert_swin, swin_flops
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
    "DyTSwinTransformer",
    "DyTVisionTransformer",
    "LayerDispatchBlock",
    "MoEAdapter",
    "TokenDispatcher",
    "convert_swin",
    "convert_vit",
    "gumbel_sigmoid_mask",
    "is_dyt_model",
    "swin_flops",
    "trainable_state_dict",
]
