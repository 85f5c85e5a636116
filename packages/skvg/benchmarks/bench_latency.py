"""Inference latency per sample of KeViLI and LeViLM at the paper's input sizes, on CPU.

640 px images, BERT-base text encoder, knowledge of up to 512 tokens (KeViLI's knowledge length set
to the passage length), ResNet-50, random weights (latency does not depend on them). Prints the
milliseconds per sample and the share of the time spent in the text encoder, measured in one run.

    uv run python packages/skvg/benchmarks/bench_latency.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    from skvg.config import KeViLIConfig, LeViLMConfig
    from skvg.models.kevili import KeViLI
    from skvg.models.levilm import LeViLM
    from skvg.models.text import TextEncoder
    from transformers import BertConfig

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is kept)")
    parser.add_argument(
        "--knowledge-tokens", type=int, nargs="+", default=[128, 512], help="passage lengths"
    )
    parser.add_argument("--proposals", type=int, default=20, help="LeViLM proposals per image")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"# skvg latency: torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}, 640 px, "
        "ResNet-50, BERT-base, batch 1"
    )
    print("\n| model | knowledge tokens | ms / sample | text encoder share |\n|---|---|---|---|")
    pixels = torch.randn(1, 3, 640, 640)
    mask = torch.zeros(1, 640, 640, dtype=torch.bool)
    query = torch.randint(1000, 2000, (1, 20))
    qmask = torch.ones(1, 20, dtype=torch.long)
    bert = BertConfig()
    with torch.no_grad():
        for length in args.knowledge_tokens:
            model = KeViLI(
                KeViLIConfig(max_query_len=20, max_knowledge_len=length),
                TextEncoder.from_config(bert),
            ).eval()
            know = torch.randint(1000, 2000, (1, length))
            kmask = torch.ones(1, length, dtype=torch.long)
            total = _time(
                lambda m=model, k=know, km=kmask: m(pixels, mask, query, qmask, k, km), args.repeats
            )
            text = _time(
                lambda m=model, k=know, km=kmask: (m.textmodel(query, qmask), m.textmodel(k, km)),
                args.repeats,
            )
            print(
                f"| KeViLI-R50 joint | {length} | {1000 * total:.0f} | {100 * text / total:.0f}% |"
            )
            levilm = LeViLM(LeViLMConfig(), TextEncoder.from_config(bert)).eval()
            ids = torch.randint(1000, 2000, (1, min(512, length + 20)))
            tmask = torch.ones_like(ids)
            ent = torch.zeros_like(ids, dtype=torch.bool)
            ent[:, 1:3] = True
            boxes = torch.rand(1, args.proposals, 2) * 500
            boxes = torch.cat([boxes, boxes + 100], dim=-1)
            total = _time(
                lambda m=levilm, i=ids, t=tmask, e=ent, b=boxes: m(pixels, b, i, t, e), args.repeats
            )
            text = _time(lambda m=levilm, i=ids, t=tmask: m.textmodel(i, t), args.repeats)
            print(
                f"| LeViLM-R50 ({args.proposals} proposals) | {length} | {1000 * total:.0f} | {100 * text / total:.0f}% |"
            )


if __name__ == "__main__":
    main()
