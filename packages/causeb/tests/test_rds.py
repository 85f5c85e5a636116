import pytest
import torch
from causeb.augment import STD_EPS, fit_batch_gaussian, random_domain_sampling, sample_least_likely


def _feature_map(batch=8, channels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(batch, channels, 1, 1, generator=g) + 0.5
    shift = torch.randn(batch, channels, 1, 1, generator=g)
    return torch.randn(batch, channels, 6, 5, generator=g) * scale + shift


def test_batch_gaussian_is_biased_covariance_plus_ridge():
    stats = torch.randn(7, 3, dtype=torch.float64)
    mean, cov = fit_batch_gaussian(stats, ridge=1e-4)
    centred = stats - stats.mean(0)
    expected = torch.stack([torch.outer(r, r) for r in centred]).sum(0) / 7 + 1e-4 * torch.eye(3)
    torch.testing.assert_close(mean, stats.mean(0))
    torch.testing.assert_close(cov, expected)


def test_kept_draws_are_the_least_likely_in_order():
    stats = torch.randn(6, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]) + 1.0
    num_draws = 500
    samples, log_prob = sample_least_likely(
        stats, num_draws, generator=torch.Generator().manual_seed(3), return_log_prob=True
    )
    # Rebuild all draws as MultivariateNormal does (loc + scale_tril @ eps) and rank by log_prob.
    mean, cov = fit_batch_gaussian(stats)
    gaussian = torch.distributions.MultivariateNormal(mean, cov)
    eps = torch.randn(num_draws, 3, generator=torch.Generator().manual_seed(3), dtype=stats.dtype)
    draws = mean + eps @ torch.linalg.cholesky(cov).T
    all_log_prob = gaussian.log_prob(draws)
    order = all_log_prob.argsort()[:6]
    torch.testing.assert_close(samples, draws[order])
    torch.testing.assert_close(log_prob, all_log_prob[order])
    assert (log_prob[1:] >= log_prob[:-1]).all()  # least likely first
    assert log_prob.max() <= all_log_prob.sort().values[6]


def test_rds_output_statistics_equal_the_sampled_ones():
    h = _feature_map()
    out = random_domain_sampling(h, num_draws=1000, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    mu = h.mean((2, 3))
    var = h.var((2, 3))
    new_mu = sample_least_likely(mu, 1000, generator=g)
    new_sigma = sample_least_likely((var + STD_EPS).sqrt(), 1000, generator=g)
    torch.testing.assert_close(out.mean((2, 3)), new_mu, atol=1e-5, rtol=1e-5)
    expected_std = new_sigma.abs() * (var / (var + STD_EPS)).sqrt()
    torch.testing.assert_close(out.std((2, 3)), expected_std, atol=1e-5, rtol=1e-4)


def test_rds_sampled_means_are_less_likely_than_the_originals():
    h = _feature_map(batch=16)
    mu = h.mean((2, 3))
    mean, cov = fit_batch_gaussian(mu.double())
    gaussian = torch.distributions.MultivariateNormal(mean, cov)
    new_mu = random_domain_sampling(h, generator=torch.Generator().manual_seed(1)).mean((2, 3))
    assert gaussian.log_prob(new_mu.double()).mean() < gaussian.log_prob(mu.double()).mean()


def test_rds_gradient_flows_only_through_the_normalised_term():
    h = _feature_map().requires_grad_(True)
    out = random_domain_sampling(h, num_draws=200, generator=torch.Generator().manual_seed(0))
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    # With detached statistics, d out / d h = sigma' / sigma per channel (element-wise).
    mu_sigma = (h.detach().var((2, 3)) + STD_EPS).sqrt()
    g = torch.Generator().manual_seed(0)
    sample_least_likely(h.detach().mean((2, 3)), 200, generator=g)
    new_sigma = sample_least_likely(mu_sigma, 200, generator=g)
    expected = weights * (new_sigma / mu_sigma)[:, :, None, None]
    torch.testing.assert_close(h.grad, expected, atol=1e-5, rtol=1e-4)


def test_rds_is_deterministic_with_a_seeded_generator():
    h = _feature_map()
    a = random_domain_sampling(h, generator=torch.Generator().manual_seed(5))
    b = random_domain_sampling(h, generator=torch.Generator().manual_seed(5))
    c = random_domain_sampling(h, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_rds_abs_sigma_option_never_flips_the_map():
    h = _feature_map(batch=4, channels=16)  # B < C: rank-deficient, only the ridge helps
    out = random_domain_sampling(h, generator=torch.Generator().manual_seed(0), use_abs_sigma=True)
    centred_in = h - h.mean((2, 3), keepdim=True)
    centred_out = out - out.mean((2, 3), keepdim=True)
    assert torch.isfinite(out).all()
    assert ((centred_in * centred_out).sum((2, 3)) > 0).all()


def test_rds_rejects_batch_of_one():
    with pytest.raises(ValueError, match="at least 2 samples"):
        random_domain_sampling(torch.randn(1, 4, 5, 5))


def test_rds_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_domain_sampling(torch.randn(4, 5))
