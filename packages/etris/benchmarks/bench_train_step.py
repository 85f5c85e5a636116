"""Training-step time and peak memory: ETRIS (frozen towers) vs full fine-tuning of the same model.

Each arm runs in its own process (peak RSS on CPU never shrinks, so one process per arm keeps the
figures independent); both use Adam and the same batch. Full fine-tuning makes every parameter
trainable (towers, ``connect``, Bridger, heads) and keeps the backbone BatchNorms in train mode,
as ETRIS does. Prints a Markdown table with hardware, versions and the command.

    python packages/etris/benchmarks/bench_train_step.py                 # RN50, 416 px, batch 4
    python packages/etris/benchmarks/bench_train_step.py --image-size 224 --batch-size 2 --steps 2

Targets (the issue's): ETRIS step time <= 0.6x and peak memory <= 0.5x of full fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def _measure(
    mode: str,
    variant: str,
    image_size: int,
    batch_size: int,
    steps: int,
    device: str,
    freeze_positions: bool = False,
) -> dict:
    import torch
    from etris.losses import etris_loss
    from etris.models import create_etris

    torch.manual_seed(0)
    model = create_etris(variant, image_size=image_size, train_positional=not freeze_positions)
    model = model.to(device).train()
    if mode == "full":
        for param in model.parameters():
            param.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    image = torch.randn(batch_size, 3, image_size, image_size, device=device)
    ids = torch.zeros(batch_size, model.config.word_len, dtype=torch.long, device=device)
    ids[:, 0], ids[:, 1:6], ids[:, 6] = 49406, 1000, 49407
    mask = (torch.rand(batch_size, 1, image_size, image_size, device=device) > 0.5).float()

    def step() -> None:
        loss = etris_loss(model(image, ids), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        from papers_shared.memory import measure_peak_memory
    except ImportError:  # older papers_shared: the same RSS sampling, inline
        measure_peak_memory = None
    if measure_peak_memory is not None:
        with measure_peak_memory(device) as meter:
            step()  # the first step allocates gradients and Adam state: part of the peak
        peak_mib, base_mib, method = (
            meter.result.peak_mib,
            meter.result.baseline_bytes / 2**20,
            meter.result.method,
        )
    else:
        import psutil

        base_mib = psutil.Process().memory_info().rss / 2**20
        step()
        import resource

        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        method = "ru_maxrss"
    times = []
    for _ in range(steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    trainable = sum(p.numel() for p in params)
    return {
        "mode": mode,
        "step_s": min(times),
        "peak_mib": peak_mib,
        "extra_mib": peak_mib - base_mib,
        "trainable": trainable,
        "method": method,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", default="etris_rn50")
    parser.add_argument("--image-size", type=int, default=416)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--steps", type=int, default=3, help="timed steps after the first (min is reported)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--freeze-positions",
        action="store_true",
        help="ETRIS arm with frozen positional embeddings (not the paper's code): the backward "
        "pass then stops at the first Bridger stage in both towers",
    )
    parser.add_argument("--child", choices=("etris", "full"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child:
        out = _measure(
            args.child,
            args.variant,
            args.image_size,
            args.batch_size,
            args.steps,
            args.device,
            freeze_positions=args.freeze_positions and args.child == "etris",
        )
        print(json.dumps(out))
        return
    results = {}
    for mode in ("etris", "full"):
        cmd = [sys.executable, __file__, "--child", mode] + sys.argv[1:]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=True, env=os.environ.copy()
        )
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    import torch

    e, f = results["etris"], results["full"]
    print(
        f"### ETRIS vs full fine-tuning: {args.variant}, {args.image_size} px, batch {args.batch_size}"
    )
    print()
    print("| arm | trainable params | step time (s) | peak memory (MiB) | peak above start (MiB) |")
    print("|---|---|---|---|---|")
    for name, r in (("ETRIS (frozen towers)", e), ("full fine-tuning", f)):
        print(
            f"| {name} | {r['trainable']:,} | {r['step_s']:.3f} | {r['peak_mib']:.0f} | {r['extra_mib']:.0f} |"
        )
    print(
        f"| ratio ETRIS / full | {e['trainable'] / f['trainable']:.3f} | {e['step_s'] / f['step_s']:.2f}x "
        f"(target <= 0.6x) | {e['peak_mib'] / f['peak_mib']:.2f}x (target <= 0.5x) | "
        f"{e['extra_mib'] / max(f['extra_mib'], 1e-9):.2f}x |"
    )
    print()
    print(
        f"hardware: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, device {args.device}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}; "
        f"memory: {e['method']}; step time: min over {args.steps} steps after the first"
    )
    print(f"command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
