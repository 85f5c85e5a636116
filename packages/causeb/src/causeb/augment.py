"""Random domain sampling (RDS), the paper's feature-statistics augmentation: new statistics
drawn from the batch's atypical tail.

For a stem output ``h: (B, C, H, W)`` the per-sample channel means and stds are modelled by one
Gaussian each over the batch; many candidates are drawn from it and the ``B`` least likely ones
replace the originals (AdaIN-style re-normalisation).
"""

from __future__ import annotations

import math

import torch

__all__ = ["STD_EPS", "fit_batch_gaussian", "sample_least_likely", "random_domain_sampling"]

STD_EPS = 1e-6  # added to the variance before the square root
RIDGE = 1e-4  # added to the covariance diagonal
NUM_DRAWS = 10_000


def fit_batch_gaussian(
    stats: torch.Tensor, ridge: float = RIDGE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C,) and covariance (C, C) of ``stats: (B, C)``: biased (divide by B) plus ``ridge * I``."""
    mean = stats.mean(0)
    centred = stats - mean
    cov = centred.T @ centred / stats.shape[0]
    return mean, cov + ridge * torch.eye(stats.shape[1], dtype=stats.dtype, device=stats.device)


def sample_least_likely(
    stats: torch.Tensor,
    num_draws: int = NUM_DRAWS,
    ridge: float = RIDGE,
    generator: torch.Generator | None = None,
    return_log_prob: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Draw ``num_draws`` samples from the batch Gaussian of ``stats: (B, C)``; keep the B with the
    lowest density, least likely first -> (B, C) (and their log-densities (B,) if asked).

    A draw is ``mean + L z`` with ``L`` the Cholesky factor of the covariance and ``z ~ N(0, I)``
    (as ``torch.distributions.MultivariateNormal`` samples), so its log-density is a decreasing
    function of ``|z|^2``: ranking by ``|z|^2`` is exact and only the kept draws are formed.
    """
    batch, channels = stats.shape
    if num_draws < batch:
        raise ValueError(f"num_draws must be >= the batch size {batch}, got {num_draws}")
    stats = stats.detach()
    mean, cov = fit_batch_gaussian(stats.double(), ridge)  # float64: stable Cholesky
    scale_tril = torch.linalg.cholesky(cov)
    z = torch.randn(
        num_draws, channels, generator=generator, dtype=stats.dtype, device=stats.device
    )
    sq_norm = z.double().pow(2).sum(1)
    kept = sq_norm.topk(batch, largest=True, sorted=True).indices  # least likely first
    samples = (mean + z[kept].double() @ scale_tril.T).to(stats.dtype)
    if not return_log_prob:
        return samples
    half_log_det = scale_tril.diagonal().log().sum()
    log_prob = -0.5 * sq_norm[kept] - half_log_det - 0.5 * channels * math.log(2 * math.pi)
    return samples, log_prob.to(stats.dtype)


def _least_likely(
    stats: torch.Tensor, num_draws: int, ridge: float, generator: torch.Generator | None
) -> torch.Tensor:
    samples = sample_least_likely(stats, num_draws, ridge, generator)
    if isinstance(samples, tuple):  # not reached: log-probabilities were not asked for
        return samples[0]
    return samples


def random_domain_sampling(
    h: torch.Tensor,
    num_draws: int = NUM_DRAWS,
    ridge: float = RIDGE,
    generator: torch.Generator | None = None,
    use_abs_sigma: bool = False,
) -> torch.Tensor:
    """RDS of ``h: (B, C, H, W)`` -> (B, C, H, W): ``((h - mu) / sigma) * sigma' + mu'``.

    ``mu``/``sigma`` are the per-sample channel mean and unbiased std (detached); ``mu'``/``sigma'``
    come from :func:`sample_least_likely`, assigned to batch items in order (no pairing). ``sigma'``
    is not clamped (it can be negative, as in the official code) unless ``use_abs_sigma``.
    """
    if h.dim() != 4:
        raise ValueError(f"RDS expects a feature map (B, C, H, W), got shape {tuple(h.shape)}")
    if h.shape[0] < 2:
        raise ValueError(
            f"RDS needs a batch of at least 2 samples to fit the batch Gaussian, got {h.shape[0]}"
        )
    if h.shape[2] * h.shape[3] < 2:
        raise ValueError(f"RDS needs at least 2 spatial positions, got {tuple(h.shape[2:])}")
    mu = h.mean(dim=(2, 3)).detach()
    sigma = (h.var(dim=(2, 3)) + STD_EPS).sqrt().detach()
    new_mu = _least_likely(mu, num_draws, ridge, generator)
    new_sigma = _least_likely(sigma, num_draws, ridge, generator)
    if use_abs_sigma:
        new_sigma = new_sigma.abs()
    normalised = (h - mu[:, :, None, None]) / sigma[:, :, None, None]
    return normalised * new_sigma[:, :, None, None] + new_mu[:, :, None, None]
