"""The CausEB objective's terms: HSIC independence, consistency and dissimilarity."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "hsic",
    "hsic_closed_form",
    "per_sample_distance",
    "dissimilarity",
    "independence_loss",
    "consistency_loss",
    "PROJECTOR_PASSES",
]

# Projector passes per training step: the official step calls it six times (each G term runs
# it once for the max and once for the mean); 4 computes each projection once.
PROJECTOR_PASSES = (4, 6)


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"hsic expects x: (m, D1) and y: (m, D2) with the same m, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError(f"hsic needs at least 2 samples, got {x.shape[0]}")


def hsic(x: torch.Tensor, y: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Biased HSIC, linear kernels: ``tr(L H K H) / (m - 1)^2`` with ``K = X X^T``, ``L = Y Y^T``,
    ``H = I - 11^T / m``. Rows are L2-normalised first when ``normalize`` (as the paper does).

    x: (m, D1), y: (m, D2) -> scalar >= 0.
    """
    _check(x, y)
    if normalize:
        x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    m = x.shape[0]
    centring = torch.eye(m, dtype=x.dtype, device=x.device) - 1.0 / m
    k = x @ x.T
    l_kernel = y @ y.T
    return torch.trace(l_kernel @ centring @ k @ centring) / (m - 1) ** 2


def hsic_closed_form(x: torch.Tensor, y: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The same value as :func:`hsic` via ``|(H X)^T (H Y)|_F^2 / (m - 1)^2`` (cheaper for m > D)."""
    _check(x, y)
    if normalize:
        x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    m = x.shape[0]
    cross = (x - x.mean(0)).T @ (y - y.mean(0))
    return cross.pow(2).sum() / (m - 1) ** 2


def per_sample_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``e_i = mean_j (a_ij - b_ij)^2``. a, b: (B, D) -> (B,)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a - b).pow(2).mean(1)


def dissimilarity(
    a: torch.Tensor, b: torch.Tensor, margin: float = 0.0, b_for_max: torch.Tensor | None = None
) -> torch.Tensor:
    """The domain-branch term G(a, b).

    ``margin == 0`` (faithful): ``max_i e_i - mean_i e_i`` -- the official ``-min(MSE - max e, 0)``,
    which is always this (>= 0, zero when every per-sample distance is equal; max not detached).
    ``margin > 0``: the hinge ``relu(margin - mean_i e_i)`` the paper presumably meant.
    ``b_for_max``: a second evaluation of ``b`` used for the max (the official code projects
    twice; values are equal, only BatchNorm running statistics see the extra pass).
    a, b: (B, D) -> scalar.
    """
    distances = per_sample_distance(a, b)
    if margin > 0:
        return F.relu(margin - distances.mean())
    for_max = distances if b_for_max is None else per_sample_distance(a, b_for_max)
    return for_max.max() - distances.mean()


def independence_loss(
    causal: tuple[torch.Tensor, torch.Tensor], domain: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """``sum_{i, j} HSIC(n(z_c^i), sg(n(z_d^j)))`` over the clean and augmented views.

    The domain features are detached: this loss only updates the causal path.
    causal, domain: pairs of (B, D) -> scalar.
    """
    terms = [hsic(zc, zd.detach()) for zc in causal for zd in domain]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def consistency_loss(
    causal: tuple[torch.Tensor, torch.Tensor],
    domain: tuple[torch.Tensor, torch.Tensor],
    projector: Callable[[torch.Tensor], torch.Tensor],
    margin: float = 0.0,
    projector_passes: int = 6,
) -> torch.Tensor:
    """``MSE(z_c, P(z~_c)) + MSE(z~_c, P(z_c)) + G(z_d, P(z~_d)) + G(z~_d, P(z_d))``.

    causal = (z_c, z~_c), domain = (z_d, z~_d): (B, D) each, un-normalised; no stop-gradient.
    ``projector_passes=6`` runs the projector as the official step does, in its order:
    P(z~_c), P(z_c), P(z~_d), P(z_d) (for G's max), P(z~_d), P(z_d) (for G's mean). In training
    mode the repeated passes give the same values (batch statistics), but the projector's
    BatchNorm running statistics are updated six times per step, as in the official code.
    ``projector_passes=4`` projects each view once.
    """
    if projector_passes not in PROJECTOR_PASSES:
        raise ValueError(
            f"projector_passes must be one of {PROJECTOR_PASSES}, got {projector_passes}"
        )
    (zc, zc_aug), (zd, zd_aug) = causal, domain
    p_zc_aug, p_zc = projector(zc_aug), projector(zc)
    p_zd_aug, p_zd = projector(zd_aug), projector(zd)
    if projector_passes == 6:
        max_zd_aug, max_zd = p_zd_aug, p_zd
        p_zd_aug, p_zd = projector(zd_aug), projector(zd)
    else:
        max_zd_aug = max_zd = None
    return (
        F.mse_loss(zc, p_zc_aug)
        + F.mse_loss(zc_aug, p_zc)
        + dissimilarity(zd, p_zd_aug, margin, max_zd_aug)
        + dissimilarity(zd_aug, p_zd, margin, max_zd)
    )
