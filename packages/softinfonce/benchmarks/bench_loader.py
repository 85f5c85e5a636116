"""Decode + speed co-augmentation throughput (decord vs PyAV, speeds 1-4) against the training step.

Prints, in one run: clips/s (1 / median time per clip over clips x repeats, the backends
alternating) of the single-process decode+augment path and of the frame decode alone, per backend
and speed; clips/s of the DataLoader with the default 2 workers; the time of one training step on
one such batch; and the ratios (loader / step consumption, decord / PyAV).

    uv run python packages/softinfonce/benchmarks/bench_loader.py
    uv run python packages/softinfonce/benchmarks/bench_loader.py --model tiny --clips 8 --size 112
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from softinfonce.augment import CoAugConfig, video_indices
from softinfonce.config import ModelConfig
from softinfonce.data import (
    SpeedCoAugDataset,
    SyntheticSpec,
    collate_views,
    generate_split,
    kinetics_folder,
)
from softinfonce.data.decode import available_video_backends, read_frames
from softinfonce.losses import SoftInfoNCELoss
from softinfonce.train import batch_loss, build_model
from torch.utils.data import DataLoader


def _loader_clips_per_second(
    dataset: SpeedCoAugDataset, batch: int, workers: int, batches: int
) -> float:
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate_views,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    count = 0
    while count < batches:
        try:
            next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        count += 1
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="frame size of the generated mp4s")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per clip (Kinetics: 10)"
    )
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8, help="clips per training step (2x views)")
    parser.add_argument("--model", choices=("avid", "tiny"), default="avid")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    print(
        f"host: {platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
        f"python {sys.version.split()[0]} | torch {torch.__version__} | threads {torch.get_num_threads()}"
    )
    try:
        load = os.getloadavg()[0]
        print(f"load average (1 min) at start: {load:.1f}")
    except OSError:
        pass
    print(f"command: {' '.join(sys.argv)}")
    base = CoAugConfig(
        num_frames=8,
        frame_rate=16.0,
        audio_duration=2.0,
        sample_rate=16_000,
        n_fft=512,
        crop_size=args.crop,
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec = SyntheticSpec(
            num_classes=4, duration=args.duration, fps=25, size=args.size, sample_rate=16_000
        )
        generate_split(tmp, "train", args.clips, spec=spec)
        records, _ = kinetics_folder(Path(tmp), "train")

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a DataLoader worker
        print(
            "\n| speed | backend | decode+augment clips/s | decode-only clips/s "
            "| decode-only CPU ms/clip |"
        )
        print("|---|---|---|---|---|")
        backends = available_video_backends()
        rates: dict[tuple[str, float], float] = {}
        decode_rates: dict[tuple[str, float], float] = {}
        decode_cpu: dict[tuple[str, float], float] = {}
        rng = random.Random(0)
        for speed in (1.0, 2.0, 3.0, 4.0):
            config = replace(base, speeds=(speed,))
            datasets = {b: SpeedCoAugDataset(records, config, backend=b) for b in backends}  # type: ignore[arg-type]
            times: dict[str, list[float]] = {b: [] for b in backends}
            decode_times: dict[str, list[float]] = {b: [] for b in backends}
            cpu_times: dict[str, list[float]] = {b: [] for b in backends}
            for b in backends:
                datasets[b][0]  # warm-up (imports, kernels, probe cache)
            # Backends alternate clip by clip (and which goes first), so both see the same load.
            for repeat in range(args.repeats):
                for index in range(len(records)):
                    start_s = rng.uniform(0.0, max(0.0, args.duration - speed * base.span))
                    indices = video_indices(
                        start_s, speed, 25.0, int(args.duration * 25), num_frames=8
                    )
                    order = backends if (repeat + index) % 2 == 0 else backends[::-1]
                    for b in order:
                        start = time.perf_counter()
                        datasets[b][index]
                        times[b].append(time.perf_counter() - start)
                    for b in order:
                        start, cpu = time.perf_counter(), time.process_time()
                        read_frames(records[index].path, indices, backend=b)  # type: ignore[arg-type]
                        decode_times[b].append(time.perf_counter() - start)
                        cpu_times[b].append(time.process_time() - cpu)
            for b in backends:
                # 1 / median time per clip: robust to load spikes on a shared machine.
                rates[(b, speed)] = 1.0 / statistics.median(times[b])
                decode_rates[(b, speed)] = 1.0 / statistics.median(decode_times[b])
                # CPU time of all threads (PyAV decodes with frame threads, decord with one).
                decode_cpu[(b, speed)] = 1000 * statistics.median(cpu_times[b])
                print(
                    f"| {speed:g} | {b} | {rates[(b, speed)]:.2f} | {decode_rates[(b, speed)]:.1f} "
                    f"| {decode_cpu[(b, speed)]:.1f} |"
                )

        torch.set_num_threads(threads)
        dataset = SpeedCoAugDataset(records, base, backend="auto")
        loader_rate = _loader_clips_per_second(
            dataset, min(args.batch, len(records)), args.workers, batches=3
        )

        if args.model == "avid":
            model_config = ModelConfig()
        else:
            model_config = ModelConfig(
                video_depth=10,
                video_widths=(16, 32, 64, 128),
                audio_widths=(16, 32, 64, 128),
                head_dims=(128, 64),
            )
        model = build_model(model_config)
        loss_fn = SoftInfoNCELoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            batch_loss(model, loss_fn, batch).loss.backward()
            optimizer.step()

        batch = collate_views([dataset[i % len(dataset)] for i in range(args.batch)])
        train_step()  # warm-up
        start = time.perf_counter()
        steps = 2
        for _ in range(steps):
            train_step()
        step_seconds = (time.perf_counter() - start) / steps
    consume = args.batch / step_seconds
    print(
        f"\nDataLoader ({args.workers} workers, backend auto={available_video_backends()[0]}): {loader_rate:.2f} clips/s"
    )
    print(
        f"training step ({args.model}, {args.batch} clips = {2 * args.batch} views, {args.crop}^2): "
        f"{step_seconds:.2f} s -> consumes {consume:.2f} clips/s"
    )
    print(f"ratio loader / step consumption: {loader_rate / consume:.2f} (target >= 1)")
    if ("decord", 1.0) in rates:
        for name, table in (("decode+augment", rates), ("decode-only", decode_rates)):
            ratios = [table[("decord", s)] / table[("pyav", s)] for s in (1.0, 2.0, 3.0, 4.0)]
            joined = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"ratio decord / PyAV ({name}) per speed 1-4: {joined} (target >= 1)")
        ratios = [decode_cpu[("pyav", s)] / decode_cpu[("decord", s)] for s in (1.0, 2.0, 3.0, 4.0)]
        joined = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"ratio PyAV / decord CPU time (decode-only) per speed 1-4: {joined} (>= 1: decord cheaper)"
        )


if __name__ == "__main__":
    main()
