from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from diffusers import DDIMScheduler
from headartist import SSDGuidance
from headartist.models import tiny_stack
from torch import nn

torch.set_num_threads(1)


class _StubControlNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(
        self, z_t, t, encoder_hidden_states, controlnet_cond, conditioning_scale, return_dict
    ):
        return [], torch.zeros(())


class _AnalyticUNet(nn.Module):
    """eps = (z_t - sqrt(abar_t) * mu(E)) / sqrt(1 - abar_t), mu(E) = mean of E (a constant image)."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.abar = alphas_cumprod
        self.config = SimpleNamespace(sample_size=4)

    def forward(
        self,
        z_t,
        t,
        encoder_hidden_states,
        down_block_additional_residuals,
        mid_block_additional_residual,
        return_dict,
    ):
        a = self.abar[t.long()].view(-1, 1, 1, 1)
        mu = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return ((z_t - a.sqrt() * mu) / (1 - a).sqrt(),)


def _scheduler():
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )


def _analytic(omega: float):
    sched = _scheduler()
    unet = _AnalyticUNet(sched.alphas_cumprod)
    return SSDGuidance(
        unet,
        _StubControlNet(),
        None,
        sched,
        guidance_scale=omega,
        min_step_percent=0.02,
        max_step_percent=0.5,
    ), sched


def test_gradient_matches_hand_computation_with_fixed_t_and_noise():
    guidance, sched = _analytic(7.5)
    B = 2
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(B, 4, 4, 4, generator=gen)  # (B,H,W,4) pseudo-latent, already latent size
    t = torch.tensor([100, 400])
    noise = torch.randn(B, 4, 4, 4, generator=gen)
    E_vd = torch.randn(2 * B, 77, 8, generator=gen)
    E_plain = torch.randn(2 * B, 77, 8, generator=gen)
    cond = torch.rand(B, 3, 32, 32, generator=gen)
    out = guidance(x, cond, E_vd, E_plain, t=t, noise=noise)

    z = x.permute(0, 3, 1, 2)
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    z_t = a.sqrt() * z + (1 - a).sqrt() * noise

    def eps(E):
        return (z_t - a.sqrt() * E.mean(dim=(1, 2)).view(-1, 1, 1, 1)) / (1 - a).sqrt()

    eps_c, eps_u, eps_est = eps(E_vd[:B]), eps(E_vd[B:]), eps(E_plain[:B])
    expected = (1 - a) * (eps_u + 7.5 * (eps_c - eps_u) - eps_est)
    torch.testing.assert_close(out.grad, expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose(out.grad_norm, expected.norm())


def test_same_prompt_closed_form_independent_of_noise():
    omega = 100.0
    guidance, sched = _analytic(omega)
    B = 3
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(B, 4, 4, 4, generator=gen)
    E = torch.randn(2 * B, 77, 8, generator=gen)
    t = torch.tensor([20, 250, 500])
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    mu = E.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    expected = -(1 - a) * (omega - 1) * a.sqrt() / (1 - a).sqrt() * (mu[:B] - mu[B:])
    for s in range(2):
        noise = torch.randn(B, 4, 4, 4, generator=torch.Generator().manual_seed(10 + s))
        out = guidance(x, torch.zeros(B, 3, 32, 32), E, E, t=t, noise=noise)
        torch.testing.assert_close(out.grad, expected.expand_as(out.grad), rtol=1e-4, atol=1e-4)


def test_omega_one_same_prompt_gives_zero_gradient():
    guidance, _ = _analytic(1.0)
    x = torch.rand(2, 4, 4, 4)
    E = torch.randn(4, 77, 8)
    out = guidance(x, torch.zeros(2, 3, 32, 32), E, E)
    # eps_u + 1 * (eps_c - eps_u) - eps_c is zero up to rounding
    assert out.grad.abs().max().item() < 1e-5


def test_loss_gradient_equals_g_over_batch():
    guidance, _ = _analytic(7.5)
    B = 4
    x = torch.rand(B, 4, 4, 4, requires_grad=True)
    E_vd, E_plain = torch.randn(2 * B, 77, 8), torch.randn(2 * B, 77, 8)
    out = guidance(x, torch.zeros(B, 3, 32, 32), E_vd, E_plain)
    (dz,) = torch.autograd.grad(out.loss, out.latents)
    torch.testing.assert_close(dz, out.grad / B)
    assert math.isclose(out.loss.item(), 0.5 * out.grad.pow(2).sum().item() / B, rel_tol=1e-5)


def test_timesteps_stay_in_inclusive_range():
    guidance, _ = _analytic(7.5)
    t = guidance.sample_timesteps(20000, torch.device("cpu"))
    assert t.min().item() == 20 and t.max().item() == 500
    guidance.set_step_range(0.02, 0.7)
    assert guidance.max_step == 700


def test_rejects_bad_inputs():
    guidance, _ = _analytic(7.5)
    with pytest.raises(ValueError, match="2B"):
        guidance(
            torch.rand(2, 4, 4, 4),
            torch.zeros(2, 3, 8, 8),
            torch.randn(2, 77, 8),
            torch.randn(4, 77, 8),
        )
    with pytest.raises(ValueError, match="pseudo-latents"):
        guidance(
            torch.rand(2, 4, 4, 5),
            torch.zeros(2, 3, 8, 8),
            torch.randn(4, 77, 8),
            torch.randn(4, 77, 8),
        )
    sched = DDIMScheduler(prediction_type="v_prediction")
    with pytest.raises(ValueError, match="epsilon"):
        SSDGuidance(
            _AnalyticUNet(sched.alphas_cumprod),
            _StubControlNet(),
            None,
            sched,
            guidance_scale=1,
            min_step_percent=0.1,
            max_step_percent=0.2,
        )


@pytest.fixture(scope="module")
def tiny():
    return tiny_stack(0)


def _tiny_guidance(stack, omega=7.5):
    unet, controlnet, vae, sched = stack
    return SSDGuidance(
        unet,
        controlnet,
        vae,
        sched,
        guidance_scale=omega,
        min_step_percent=0.02,
        max_step_percent=0.98,
    )


def test_tiny_diffusers_rgb_path_gradients_reach_image_not_backbone(tiny):
    guidance = _tiny_guidance(tiny)
    B = 2
    img = torch.rand(B, 48, 48, 3, requires_grad=True)
    E_vd, E_plain = torch.randn(2 * B, 77, 32), torch.randn(2 * B, 77, 32)
    cond = torch.rand(B, 3, 64, 64)
    out = guidance(img, cond, E_vd, E_plain)
    assert out.latents.shape == (B, 4, 8, 8)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    for module in tiny[:3]:
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())


def test_tiny_diffusers_explicit_t_noise_deterministic_and_controlnet_matters(tiny):
    guidance = _tiny_guidance(tiny)
    B = 1
    x = torch.rand(B, 16, 16, 4)
    E_vd, E_plain = torch.randn(2 * B, 77, 32), torch.randn(2 * B, 77, 32)
    t, noise = torch.tensor([300]), torch.randn(B, 4, 8, 8)
    c1, c2 = torch.zeros(B, 3, 64, 64), torch.ones(B, 3, 64, 64)
    g1 = guidance(x, c1, E_vd, E_plain, t=t, noise=noise).grad
    g1b = guidance(x, c1, E_vd, E_plain, t=t, noise=noise).grad
    g2 = guidance(x, c2, E_vd, E_plain, t=t, noise=noise).grad
    assert torch.equal(g1, g1b)
    assert not torch.allclose(g1, g2)


def test_fresh_controlnet_zero_convs_ignore_condition():
    guidance = _tiny_guidance(tiny_stack(1, randomise_zero_convs=False))
    x = torch.rand(1, 8, 8, 4)
    E_vd, E_plain = torch.randn(2, 77, 32), torch.randn(2, 77, 32)
    t, noise = torch.tensor([300]), torch.randn(1, 4, 8, 8)
    g1 = guidance(x, torch.zeros(1, 3, 64, 64), E_vd, E_plain, t=t, noise=noise).grad
    g2 = guidance(x, torch.ones(1, 3, 64, 64), E_vd, E_plain, t=t, noise=noise).grad
    torch.testing.assert_close(g1, g2)
