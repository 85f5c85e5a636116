"""The objectives: the bases' WGAN-GP / VAE / reconstruction terms and DSP's V2SM and VOPE losses.

Shapes: x, fake (B, F) features; c, a (B, d_a) prototypes; y (B,) class rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CenterLoss",
    "gradient_penalty",
    "v2s_loss",
    "vae_loss",
    "vope_loss",
    "weighted_l1",
]


def gradient_penalty(
    critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    c: torch.Tensor,
) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x~ D(x~, c)||_2 - 1)^2], x~ = beta x + (1 - beta) x^, beta ~ U(0, 1)."""
    beta = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype)
    mixed = (beta * real + (1.0 - beta) * fake).detach().requires_grad_(True)
    out = critic(mixed, c)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.norm(2, dim=1) - 1.0) ** 2).mean()


def weighted_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TF-VAEGAN's WeightedL1: sum_j w_j |p_j - g_j| with w_j = (p_j - g_j)^2 / ||p - g||_2
    (weights without gradient), averaged over the batch."""
    diff = pred - target
    with torch.no_grad():
        weight = diff.pow(2) / diff.norm(2, dim=1, keepdim=True).clamp_min(1e-12)
    return (weight * diff.abs()).sum(dim=1).mean()


def vae_loss(
    recon: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor
) -> torch.Tensor:
    """BCE(recon, x, summed) / B + KL(N(mean, exp(log_var)) || N(0, I)) / B (TF-VAEGAN)."""
    batch = x.shape[0]
    bce = F.binary_cross_entropy(
        recon.clamp(1e-12, 1.0), x.detach().clamp(0.0, 1.0), reduction="sum"
    )
    kld = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
    return (bce + kld) / batch


def v2s_loss(mapped: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between V2SM outputs and prototypes, mean over batch and dimensions."""
    return (mapped - target).abs().mean()


def vope_loss(evolved: torch.Tensor, mapped_fake: torch.Tensor) -> torch.Tensor:
    """||VOPE(z_y) - stopgrad(V2SM(x^))||_1, mean over batch and dimensions."""
    return (evolved - mapped_fake.detach()).abs().mean()


class CenterLoss(nn.Module):
    """FREE's self-adaptive margin centre loss on refined features (learnable class centres).

    loss = w_in * mean d(x, c_y) + (1 - w_in) * mean relu(margin + d(x, c_y) - min_k!=y d(x, c_k)),
    d the squared Euclidean distance. x: (B, d), y: (B,) rows in 0..K-1.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, dim))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, margin: float, incenter_weight: float
    ) -> torch.Tensor:
        dist = torch.cdist(x, self.centers.to(x.dtype)).pow(2)  # (B, K)
        pos = dist.gather(1, y[:, None]).squeeze(1)
        other = dist.scatter(1, y[:, None], float("inf"))
        neg = (
            other.min(dim=1).values if dist.shape[1] > 1 else pos.new_full(pos.shape, float("inf"))
        )
        push = F.relu(margin + pos - neg) if dist.shape[1] > 1 else torch.zeros_like(pos)
        return incenter_weight * pos.mean() + (1.0 - incenter_weight) * push.mean()
