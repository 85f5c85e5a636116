"""Self score distillation (SSD), the paper's Sec. 3: two passes of one frozen ControlNet + UNet on
the same noisy latent, one with a large classifier-free guidance weight and the view-dependent
prompt, one with weight 1 and the plain prompt. The gradient is their difference weighted by
(1 - alpha_bar_t); the sampled noise is not subtracted (unlike SDS) and no LoRA is trained (unlike
VSD)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SSDGuidance", "SSDOutput"]


@dataclass
class SSDOutput:
    """``loss`` (differentiable w.r.t. the input), ``grad`` = g, ``grad_norm`` = ||g||, the
    latents ``z`` the loss was taken on, and the timesteps ``t`` used."""

    loss: Tensor
    grad: Tensor
    grad_norm: Tensor
    latents: Tensor
    t: Tensor


class SSDGuidance(nn.Module):
    """SSD on built diffusers modules (``UNet2DConditionModel``, ``ControlNetModel``,
    ``AutoencoderKL`` or ``None`` for the pseudo-latent path only, and a scheduler with
    ``alphas_cumprod`` / ``add_noise`` such as ``DDIMScheduler``). All backbone weights are frozen.

    ``guidance_scale`` is omega of the view-dependent branch; timesteps are drawn uniformly from
    ``{int(1000 * min_step_percent), ..., int(1000 * max_step_percent)}`` (inclusive)."""

    def __init__(
        self,
        unet: nn.Module,
        controlnet: nn.Module,
        vae: nn.Module | None,
        scheduler: Any,
        *,
        guidance_scale: float,
        min_step_percent: float,
        max_step_percent: float,
        condition_scale: float = 1.0,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        prediction = getattr(scheduler.config, "prediction_type", "epsilon")
        if prediction != "epsilon":
            raise ValueError(
                f"SSDGuidance needs an epsilon-prediction scheduler, got prediction_type={prediction!r}"
            )
        if not 0.0 <= min_step_percent <= max_step_percent <= 1.0:
            raise ValueError(
                "need 0 <= min_step_percent <= max_step_percent <= 1, got "
                f"{min_step_percent}, {max_step_percent}"
            )
        if grad_clip is not None and grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {grad_clip}")
        # diffusers modules, typed loosely: their ``config`` is a FrozenDict of attributes
        self.unet: Any = unet
        self.controlnet: Any = controlnet
        self.vae: Any = vae
        self.scheduler = scheduler
        for module in (unet, controlnet, vae):
            if module is not None:
                module.requires_grad_(False)
                module.eval()
        self.guidance_scale = float(guidance_scale)
        self.condition_scale = float(condition_scale)
        self.grad_clip = grad_clip
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.set_step_range(min_step_percent, max_step_percent)

    def set_step_range(self, min_step_percent: float, max_step_percent: float) -> None:
        """Set the inclusive timestep range from fractions of 1000 steps (the paper's schedule
        drops the texture stage's upper bound from 0.98 to 0.7 at step 10 000)."""
        self.min_step = int(self.num_train_timesteps * min_step_percent)
        self.max_step = int(self.num_train_timesteps * max_step_percent)

    @property
    def vae_scale_factor(self) -> int:
        if self.vae is None:
            return 8
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    def encode_images(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B,H,W,3) in [0,1] -> scaled VAE latents (a sample of the posterior, not its mode).
        Gradients flow through the frozen encoder."""
        if self.vae is None:
            raise ValueError("this SSDGuidance has no VAE: pass a 4-channel pseudo-latent instead")
        res = self.latent_size() * self.vae_scale_factor
        x = images.permute(0, 3, 1, 2)
        x = F.interpolate(x, (res, res), mode="bilinear", align_corners=False)
        x = x * 2.0 - 1.0
        x = x.to(next(self.vae.parameters()).dtype)
        dist = self.vae.encode(x).latent_dist
        return dist.sample(generator=generator) * self.vae.config.scaling_factor

    def to_latents(self, image: Tensor) -> Tensor:
        """Images (B,H,W,3) go through the VAE; pseudo-latents (B,H,W,4) are resized only."""
        if image.ndim != 4 or image.shape[-1] not in (3, 4):
            raise ValueError(
                f"expected (B,H,W,3) images or (B,H,W,4) pseudo-latents, got {tuple(image.shape)}"
            )
        if image.shape[-1] == 3:
            return self.encode_images(image)
        size = self.latent_size()
        return F.interpolate(
            image.permute(0, 3, 1, 2), (size, size), mode="bilinear", align_corners=False
        )

    def sample_timesteps(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        return torch.randint(
            self.min_step, self.max_step + 1, (batch,), device=device, generator=generator
        )

    @torch.no_grad()
    def predict_noise(self, z_t: Tensor, t: Tensor, embeddings: Tensor, cond: Tensor) -> Tensor:
        """epsilon-hat = UNet(z_t, t, E, residuals = ControlNet(z_t, t, E, cond)); ``z_t``, ``t`` and
        ``cond`` have the batch size of ``embeddings``."""
        dtype = next(self.unet.parameters()).dtype
        z_t = z_t.to(dtype)
        embeddings = embeddings.to(dtype)
        t = t.to(dtype)
        down, mid = self.controlnet(
            z_t,
            t,
            encoder_hidden_states=embeddings,
            controlnet_cond=cond.to(dtype),
            conditioning_scale=self.condition_scale,
            return_dict=False,
        )
        out = self.unet(
            z_t,
            t,
            encoder_hidden_states=embeddings,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]
        return out.float()

    def predictions(
        self, z: Tensor, t: Tensor, noise: Tensor, cond: Tensor, E_vd: Tensor, E_plain: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(eps_pre, eps_est, w): the omega-guided prediction under the view-dependent prompt,
        the plain prompt's conditional prediction (CFG weight 1) and w = 1 - alpha_bar_t, all
        on z_t = add_noise(z, noise, t) with t and noise shared by both passes."""
        B = z.shape[0]
        if E_vd.shape[0] != 2 * B or E_plain.shape[0] != 2 * B:
            raise ValueError(
                f"embeddings must be [cond ; uncond] with 2B = {2 * B} rows, got "
                f"{E_vd.shape[0]} and {E_plain.shape[0]}"
            )
        if cond.shape[0] != B:
            raise ValueError(f"cond must have batch {B}, got {cond.shape[0]}")
        with torch.no_grad():
            z_t = self.scheduler.add_noise(z.detach(), noise, t)
            # view-dependent prompt, both halves; plain prompt, conditional half only
            emb = torch.cat([E_vd, E_plain[:B]], dim=0)
            eps = self.predict_noise(
                torch.cat([z_t] * 3), torch.cat([t] * 3), emb, torch.cat([cond] * 3)
            )
            eps_c_vd, eps_u_vd, eps_c_plain = eps.chunk(3)
            eps_pre = eps_u_vd + self.guidance_scale * (eps_c_vd - eps_u_vd)
            alphas = self.scheduler.alphas_cumprod.to(z.device)[t.long()].float()
            w = (1.0 - alphas).view(-1, *([1] * (z.ndim - 1)))
        return eps_pre, eps_c_plain, w

    def ssd_grad(
        self, z: Tensor, t: Tensor, noise: Tensor, cond: Tensor, E_vd: Tensor, E_plain: Tensor
    ) -> Tensor:
        """g = (1 - alpha_bar_t) * (eps_pre - eps_est); optionally clamped, always nan_to_num."""
        eps_pre, eps_est, w = self.predictions(z, t, noise, cond, E_vd, E_plain)
        g = w * (eps_pre - eps_est)
        if self.grad_clip is not None:
            g = g.clamp(-self.grad_clip, self.grad_clip)
        return torch.nan_to_num(g)

    def forward(
        self,
        image: Tensor,
        cond: Tensor,
        E_vd: Tensor,
        E_plain: Tensor,
        *,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> SSDOutput:
        """SSD loss for images (B,H,W,3) in [0,1] or pseudo-latents (B,H,W,4). ``t`` (B,) and
        ``noise`` (latent shape) may be given for reproducible tests. The loss is
        0.5 * sum((z - sg(z - g))^2) / B, so dL/dz = g / B."""
        z = self.to_latents(image).float()
        B = z.shape[0]
        if t is None:
            t = self.sample_timesteps(B, z.device)
        if noise is None:
            noise = torch.randn(z.shape, device=z.device, dtype=z.dtype)
        if t.shape != (B,):
            raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
        if noise.shape != z.shape:
            raise ValueError(
                f"noise must have the latent shape {tuple(z.shape)}, got {tuple(noise.shape)}"
            )
        g = self.ssd_grad(z, t, noise.to(z), cond, E_vd, E_plain)
        target = (z - g).detach()
        loss = 0.5 * F.mse_loss(z, target, reduction="sum") / B
        return SSDOutput(loss=loss, grad=g, grad_norm=g.norm(), latents=z, t=t)
