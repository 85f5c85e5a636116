"""HSIC with linear kernels, the independence criterion between causal and domain features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["hsic", "hsic_closed_form"]


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
