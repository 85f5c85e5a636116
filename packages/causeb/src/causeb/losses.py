"""The CausEB objective's terms: independence (HSIC), consistency and dissimilarity."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from causeb.hsic import hsic

__all__ = ["per_sample_distance", "dissimilarity", "independence_loss", "consistency_loss"]


def per_sample_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``e_i = mean_j (a_ij - b_ij)^2``. a, b: (B, D) -> (B,)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a - b).pow(2).mean(1)


def dissimilarity(a: torch.Tensor, b: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """The domain-branch term G(a, b).

    ``margin == 0`` (faithful): ``max_i e_i - mean_i e_i`` -- the official ``-min(MSE - max e, 0)``,
    which is always this (>= 0, zero when every per-sample distance is equal; max not detached).
    ``margin > 0``: the hinge ``relu(margin - mean_i e_i)`` the paper presumably meant.
    a, b: (B, D) -> scalar.
    """
    distances = per_sample_distance(a, b)
    if margin > 0:
        return F.relu(margin - distances.mean())
    return distances.max() - distances.mean()


def independence_loss(
    causal: tuple[torch.Tensor, torch.Tensor], domain: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """``sum_{i, j} HSIC(n(z_c^i), sg(n(z_d^j)))`` over the clean and augmented views.

    The domain features are detached: this loss only updates the causal path.
    causal, domain: pairs of (B, D) -> scalar.
    """
    return sum(hsic(zc, zd.detach()) for zc in causal for zd in domain)  # type: ignore[return-value]


def consistency_loss(
    causal: tuple[torch.Tensor, torch.Tensor],
    domain: tuple[torch.Tensor, torch.Tensor],
    projector: Callable[[torch.Tensor], torch.Tensor],
    margin: float = 0.0,
) -> torch.Tensor:
    """``MSE(z_c, P(z~_c)) + MSE(z~_c, P(z_c)) + G(z_d, P(z~_d)) + G(z~_d, P(z_d))``.

    causal = (z_c, z~_c), domain = (z_d, z~_d): (B, D) each, un-normalised; no stop-gradient.
    """
    (zc, zc_aug), (zd, zd_aug) = causal, domain
    return (
        F.mse_loss(zc, projector(zc_aug))
        + F.mse_loss(zc_aug, projector(zc))
        + dissimilarity(zd, projector(zd_aug), margin)
        + dissimilarity(zd_aug, projector(zd), margin)
    )
