"""Training-step time CausEB / ERM (ResNet-18, same batch), RDS time share, inference cost.

    uv run python packages/causeb/benchmarks/bench_step.py --image-size 128 --batch-per-domain 8

Prints one table measured in this run (median of ``--repeats`` timed steps after a warm-up;
ERM and CausEB steps alternate so that a change of machine load hits both alike).
RDS is also timed in the literal form (MultivariateNormal sample + log_prob of all draws) to show
what the closed-form ranking saves.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
import torchvision
from causeb import CauseEB
from causeb.augment import fit_batch_gaussian, random_domain_sampling

from papers_shared.counting import count_flops
from papers_shared.dg import ERM


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved_times(fn_a, fn_b, sync, repeats: int) -> tuple[float, float]:
    """Median times of two functions called alternately (after one warm-up call each)."""
    times: tuple[list[float], list[float]] = ([], [])
    fn_a(), fn_b()
    for _ in range(repeats):
        for fn, bucket in ((fn_a, times[0]), (fn_b, times[1])):
            start = time.perf_counter()
            fn()
            sync()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _literal_rds(h: torch.Tensor, num_draws: int = 10_000) -> torch.Tensor:
    """RDS as the official code writes it: score every draw with MultivariateNormal.log_prob."""
    mu, sigma = h.mean((2, 3)), (h.var((2, 3)) + 1e-6).sqrt()
    new = []
    for stats in (mu, sigma):
        mean, cov = fit_batch_gaussian(stats)
        gaussian = torch.distributions.MultivariateNormal(mean, cov)
        draws = gaussian.sample((num_draws,))
        new.append(draws[gaussian.log_prob(draws).topk(len(stats), largest=False).indices])
    return ((h - mu[..., None, None]) / sigma[..., None, None]) * new[1][..., None, None] + new[0][
        ..., None, None
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-per-domain", type=int, default=8)
    parser.add_argument("--domains", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape = (3, args.image_size, args.image_size)
    hparams = {"resnet18": True, "resnet_pretrained": False, "lr": 5e-5, "weight_decay": 0.0}
    hparams.update({"batch_size": args.batch_per_domain, "nonlinear_classifier": False})
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(args.batch_per_domain, *shape, generator=g).to(device),
            torch.randint(0, 7, (args.batch_per_domain,), generator=g).to(device),
        )
        for _ in range(args.domains)
    ]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(fn):
        def run():
            fn()
            sync()

        return _median_time(run, args.repeats)

    erm = ERM(shape, 7, args.domains, hparams).to(device)
    causeb = CauseEB(shape, 7, args.domains, hparams).to(device)
    # interleaved, so load changes on a shared machine hit both alike
    erm_step, causeb_step = _interleaved_times(
        lambda: erm.update(batches), lambda: causeb.update(batches), sync, args.repeats
    )
    with torch.no_grad():
        h = causeb.base(torch.cat([x for x, _ in batches]))
    rds_time = timed(lambda: random_domain_sampling(h))
    literal_rds_time = timed(lambda: _literal_rds(h))

    causeb.eval()
    plain = torchvision.models.resnet18(weights=None, num_classes=7).to(device).eval()
    x = batches[0][0]
    flops_causeb = count_flops(causeb.predict, x).total
    flops_plain = count_flops(plain, x).total
    with torch.no_grad():  # interleaved, so load changes hit both alike
        predict_time, plain_time = _interleaved_times(
            lambda: causeb.predict(x), lambda: plain(x), sync, max(args.repeats, 10)
        )

    batch = args.domains * args.batch_per_domain
    print(
        f"causeb step benchmark | torch {torch.__version__} | {platform.processor() or platform.machine()}"
        f" | device {device} | threads {torch.get_num_threads()} | python {sys.version.split()[0]}"
    )
    print(f"ResNet-18, batch {batch} ({args.domains} x {args.batch_per_domain}), {shape}")
    print(f"stem output for RDS: {tuple(h.shape)}")
    rows = [
        ("ERM step (s)", f"{erm_step:.3f}"),
        ("CausEB step (s)", f"{causeb_step:.3f}"),
        ("step ratio CausEB / ERM", f"{causeb_step / erm_step:.2f}"),
        ("RDS, 10,000 draws x 2 (s)", f"{rds_time:.4f}"),
        ("RDS share of the CausEB step", f"{100 * rds_time / causeb_step:.1f} %"),
        ("literal RDS (MVN log_prob of all draws) (s)", f"{literal_rds_time:.4f}"),
        ("predict MACs CausEB / plain ResNet-18", f"{flops_causeb:,} / {flops_plain:,}"),
        ("predict time ratio CausEB / plain ResNet-18", f"{predict_time / plain_time:.2f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
