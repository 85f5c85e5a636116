"""Tiny randomly initialised diffusers modules (tests and the demo; no download)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler


def tiny_stack(
    seed: int = 0, randomise_zero_convs: bool = True
) -> tuple[UNet2DConditionModel, ControlNetModel, AutoencoderKL, DDIMScheduler]:
    """UNet (32,64) with cross-attention width 32 on 8x8 latents, a ControlNet copied from it
    (its zero-initialised output convs randomised unless told not to, so the condition matters)
    and a 4-level VAE (64x64 images -> 8x8 latents); SD's DDIM schedule."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(8, 16, 16, 16)
    )
    if randomise_zero_convs:
        with torch.no_grad():
            for name, p in controlnet.named_parameters():
                if name.startswith(
                    (
                        "controlnet_down_blocks",
                        "controlnet_mid_block",
                        "controlnet_cond_embedding.conv_out",
                    )
                ):
                    p.normal_(0.0, 0.05)
    vae_config: dict[str, Any] = {
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": (8, 16, 16, 16),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": 4,
        "norm_num_groups": 8,
        "sample_size": 64,
        "layers_per_block": 1,
    }
    vae = AutoencoderKL(**vae_config)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    return unet, controlnet, vae, scheduler
