"""One training step of RIDG vs ERM on the same batch, and the loss alone at DomainNet size.

Prints (1) the RIDG / ERM step-time ratio for DomainBed's ResNet-18 (224x224, one minibatch per
training domain) and (2) the closed-form vs naive invariance loss (forward + backward) at
K = 345, N = 96, D = 2048 with the largest tensor each path creates.

    uv run python packages/ridg/benchmarks/bench_step.py --batch-per-domain 32
    uv run python packages/ridg/benchmarks/bench_step.py --batch-per-domain 8 --steps 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
from ridg import RIDG, RationaleInvarianceLoss
from torch.utils._python_dispatch import TorchDispatchMode

from papers_shared.dg import ERM, hparam_space, resolve_hparams


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        inputs = {
            a.untyped_storage().data_ptr()
            for a in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(a, torch.Tensor)
        }  # views and in-place results alias an input: not new memory
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.numel = max(self.numel, t.numel())
        return out


def step_times(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    hp = resolve_hparams(
        hparam_space(RIDG, "PACS"), overrides={"resnet18": True, "resnet_pretrained": False}
    )
    torch.manual_seed(0)
    erm = ERM((3, 224, 224), args.num_classes, args.domains, hp)
    ridg = RIDG((3, 224, 224), args.num_classes, args.domains, hp)
    ridg.load_state_dict(erm.state_dict())  # same weights; the bank starts empty
    g = torch.Generator().manual_seed(0)
    batch = [
        (
            torch.randn(args.batch_per_domain, 3, 224, 224, generator=g),
            torch.randint(0, args.num_classes, (args.batch_per_domain,), generator=g),
        )
        for _ in range(args.domains)
    ]
    times: dict[str, list[float]] = {"ERM": [], "RIDG": []}
    for i in range(args.warmup + args.steps):  # interleaved so load drifts hit both alike
        for name, algo in (("ERM", erm), ("RIDG", ridg)):
            start = time.perf_counter()
            algo.update(batch)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    return times["ERM"], times["RIDG"]


def regulariser_alone(args: argparse.Namespace, reps: int = 50) -> float:
    """Median seconds of the invariance loss + its backward at the step's sizes (K, N, 512)."""
    n = args.batch_per_domain * args.domains
    loss_fn = RationaleInvarianceLoss(args.num_classes, 512)
    head = torch.nn.Linear(512, args.num_classes)
    y = torch.randint(0, args.num_classes, (n,))
    z = torch.randn(n, 512, requires_grad=True)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        loss_fn(z, head, y).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loss_only(closed: bool, k: int, n: int, d: int) -> tuple[float, int]:
    torch.manual_seed(0)
    loss_fn = RationaleInvarianceLoss(k, d, use_closed_form=closed)
    head = torch.nn.Linear(d, k)
    y = torch.randint(0, k, (n,))
    z = torch.randn(n, d, requires_grad=True)
    loss_fn.update_bank(z, head.weight, y)  # in place; measured: the loss and its gradients
    loss_fn.distance(z, head.weight, y).backward()  # warm-up
    start = time.perf_counter()
    loss_fn.distance(z, head.weight, y).backward()
    elapsed = time.perf_counter() - start
    with LargestTensor() as mode:  # separate call: the mode's overhead stays out of the timing
        loss_fn.distance(z, head.weight, y).backward()
    return elapsed, mode.numel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-per-domain", type=int, default=32)
    parser.add_argument("--domains", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--loss-batch", type=int, default=96, help="N for the DomainNet loss")
    parser.add_argument("--skip-step", action="store_true", help="only the DomainNet loss part")
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive DomainNet loss")
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, python {sys.version.split()[0]}"
    )
    print(f"# command: {' '.join(sys.argv)}")
    if not args.skip_step:
        erm, ridg = step_times(args)
        e, r = statistics.median(erm), statistics.median(ridg)
        print(
            f"\n| ResNet-18 step, batch {args.domains}x{args.batch_per_domain}, K={args.num_classes} "
            f"| median s | steps |\n|---|---|---|"
        )
        print(f"| ERM | {e:.3f} | {len(erm)} |\n| RIDG | {r:.3f} | {len(ridg)} |")
        print(f"\nRIDG / ERM step time: {r / e:.3f} (target <= 1.10)")
        alone = regulariser_alone(args)
        print(
            f"regulariser alone (loss + backward, N={args.batch_per_domain * args.domains}, "
            f"D=512): {1e3 * alone:.2f} ms = {100 * alone / e:.3f} % of the ERM step "
            f"-> load-free ratio estimate {1 + alone / e:.4f}"
        )
    k, d, n = 345, 2048, args.loss_batch
    print(f"\n| invariance loss fwd+bwd, K={k}, N={n}, D={d} | s | largest new tensor (elements) |")
    print("|---|---|---|")
    paths = [("closed form", True)] + ([] if args.skip_naive else [("naive (K, N, D)", False)])
    for name, closed in paths:
        seconds, numel = loss_only(closed, k, n, d)
        print(f"| {name} | {seconds:.3f} | {numel:,} |")
    print(f"\n(K, N, D) = {k * n * d:,} elements; bank (K, K, D) = {k * k * d:,} elements")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
