"""``headartist demo``: the mechanics of self score distillation on tiny random diffusers models.

Claim in miniature (the paper, Sec. 3): an SSD update moves the latents along the difference of
the two guided predictions, -(eps_pre - eps_est), not along -(eps_pre - eps) as SDS does. Per seed
a tiny randomly initialised UNet + ControlNet (DDIM schedule) scores a 4-channel pseudo-latent;
one gradient step is taken with the SSD loss and, as the baseline, with an SDS loss built from the
same t, noise and guided prediction. The metric is the cosine between the latent change and
-(eps_pre - eps_est). Without pretrained weights this shows the mechanics, not the quality of
generated heads.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from headartist.losses import SSDGuidance
from headartist.models import tiny_stack
from papers_shared.methods import DemoResult, Table
from papers_shared.runs import make_run_dir, plot_curves, write_metrics
from papers_shared.verdict import judge_claim

__all__ = ["MARGIN", "demo"]

MARGIN = 0.2  # cosine units, fixed before the run


def _one_seed(seed: int, lr: float = 0.1) -> tuple[float, float]:
    unet, controlnet, vae, sched = tiny_stack(seed)
    guidance = SSDGuidance(
        unet,
        controlnet,
        vae,
        sched,
        guidance_scale=7.5,
        min_step_percent=0.02,
        max_step_percent=0.98,
    )
    gen = torch.Generator().manual_seed(seed)
    B = 1
    x0 = torch.rand(B, 8, 8, 4, generator=gen) * 2 - 1
    E_vd = torch.randn(2 * B, 77, 32, generator=gen)
    E_plain = torch.randn(2 * B, 77, 32, generator=gen)
    cond = torch.rand(B, 3, 64, 64, generator=gen)
    t = torch.randint(guidance.min_step, guidance.max_step + 1, (B,), generator=gen)
    noise = torch.randn(B, 4, 8, 8, generator=gen)
    eps_pre, eps_est, w = guidance.predictions(
        x0.permute(0, 3, 1, 2), t, noise, cond, E_vd, E_plain
    )
    direction = -(eps_pre - eps_est).flatten()

    def step(use_ssd: bool) -> torch.Tensor:
        x = x0.clone().requires_grad_(True)
        if use_ssd:
            loss = guidance(x, cond, E_vd, E_plain, t=t, noise=noise).loss
        else:  # SDS with the same t, noise and guided prediction
            z = guidance.to_latents(x)
            g = w * (eps_pre - noise)
            loss = 0.5 * F.mse_loss(z, (z - g).detach(), reduction="sum") / B
        (grad,) = torch.autograd.grad(loss, x)
        return (-lr * grad).permute(0, 3, 1, 2).flatten()

    ssd = F.cosine_similarity(step(True), direction, dim=0).item()
    sds = F.cosine_similarity(step(False), direction, dim=0).item()
    return ssd, sds


def demo(
    *,
    full: bool = False,
    output_root: Path = Path("runs"),
    progress: bool | None = None,
    seed: int = 0,
) -> DemoResult:
    torch.set_num_threads(1)
    seeds = [seed + i for i in range(8 if full else 3)]
    ssd, sds = [], []
    for s in seeds:
        a, b = _one_seed(s)
        ssd.append(a)
        sds.append(b)
    verdict = judge_claim(
        ssd,
        sds,
        MARGIN,
        method_name="SSD step",
        baseline_name="SDS step",
        metric="cos(latent change, -(eps_pre - eps_est))",
    )
    run_dir = make_run_dir("headartist", output_root)
    write_metrics(
        run_dir,
        {"seeds": seeds, "ssd": ssd, "sds": sds, "margin": MARGIN, "verdict": verdict.to_dict()},
    )
    plot_curves(
        {"SSD step": (seeds, ssd), "SDS step": (seeds, sds)},
        run_dir / "cosine.png",
        title="latent change vs -(eps_pre - eps_est)",
        xlabel="seed",
        ylabel="cosine",
    )
    table = Table(
        ["arm", "mean", "std"],
        [[a.name, f"{a.mean:.3f}", f"{a.std:.3f}"] for a in (verdict.method, verdict.baseline)],
        title="One gradient step on tiny random diffusers models (mechanics only)",
        notes=[verdict.line(), "Random weights: this checks the update rule, not head quality."],
    )
    return DemoResult(
        package="headartist",
        claim="an SSD step moves the latents along -(eps_pre - eps_est)",
        metric="cosine",
        table=table,
        run_dir=run_dir,
        verdicts=[verdict],
    )
