"""Throughput of the InDET pipeline on CPU, measured in one run.

1. Records per second for every stage with the offline template backends, the tiny random CLIP and
   the hashing embedder, on the six sample photos (repeated ``--repeat`` times).
2. The CLIP filter with OpenAI's ViT-B/32 architecture (QuickGELU, random weights, 224 px):
   phrases per second when each phrase is scored alone (one text forward and both image forwards
   per phrase) vs batched scoring (one text forward for all candidates of an object, each image
   embedded once and reused). Both give the same scores (tested).

    uv run python packages/instructdet/benchmarks/bench_pipeline.py [--threads 2] [--objects 8]
"""

from __future__ import annotations

import argparse
import platform
import random
import time

import numpy as np
import torch
from PIL import Image


def stage_throughput(repeat: int) -> list[tuple[str, float]]:
    from instructdet.config import STAGES, PipelineConfig
    from instructdet.data.records import normalize_record
    from instructdet.data.sample import sample_image_loader, sample_records
    from instructdet.demo import tiny_clip_scorer
    from instructdet.models.backends import TemplateLLM, TemplateVLM
    from instructdet.models.embedder import HashingEmbedder
    from instructdet.pipeline.runner import Pipeline

    pipe = Pipeline(
        PipelineConfig(dbscan_eps=1.0),
        llm=TemplateLLM(),
        caption_vlm=TemplateVLM(),
        local_vlm=TemplateVLM(),
        scorer=tiny_clip_scorer(0),
        embedder=HashingEmbedder(),
        image_loader=sample_image_loader,
    )
    records = []
    for i in range(repeat):
        for r in sample_records():
            r = dict(r, image_id=i)
            records.append(normalize_record(r))
    for r in sample_records():
        sample_image_loader(r)  # decode the photos once, outside the timings
    rows = []
    for stage in STAGES:
        start = time.perf_counter()
        records = [pipe.apply(stage, r) for r in records]
        rows.append((stage, len(records) / (time.perf_counter() - start)))
    return rows


def filter_throughput(objects: int, phrases: int) -> tuple[float, float, float]:
    import open_clip
    from instructdet.models.clip_filter import ClipScorer, filter_phrases

    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32-quickgelu", pretrained=None
    )
    tokenizer = open_clip.get_tokenizer("ViT-B-32-quickgelu")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    words = [
        "red",
        "blue",
        "small",
        "large",
        "man",
        "woman",
        "dog",
        "car",
        "left",
        "right",
        "near",
        "behind",
        "table",
        "chair",
        "tall",
    ]
    pyrng = random.Random(0)
    jobs = []
    for i in range(objects):
        box = [40 + 30 * i, 60, 120, 150]
        refs = [f"object {i} " + " ".join(pyrng.sample(words, 3))]
        gen = [" ".join(pyrng.sample(words, 4)) + f" {i} {j}" for j in range(phrases)]
        jobs.append((box, refs, gen))

    def run(batch_size: int, per_phrase: bool) -> tuple[float, list]:
        scorer = ClipScorer(model, preprocess, tokenizer, batch_size=batch_size)
        kept = []
        start = time.perf_counter()
        for box, refs, gen in jobs:
            if per_phrase:
                for text in gen:
                    scorer.clear_cache()
                    kept.append(filter_phrases(scorer, image, [box], refs, [text]).kept)
            else:
                scorer.clear_cache()
                kept.append(filter_phrases(scorer, image, [box], refs, gen).kept)
        return objects * phrases / (time.perf_counter() - start), kept

    run(64, False)  # warm-up
    unbatched, _ = run(1, True)
    batched, _ = run(64, False)
    return unbatched, batched, batched / unbatched


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads"
    )
    parser.add_argument("--repeat", type=int, default=3, help="copies of the six sample photos")
    parser.add_argument("--objects", type=int, default=6, help="objects in the filter benchmark")
    parser.add_argument("--phrases", type=int, default=16, help="generated phrases per object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# instructdet benchmark: torch {torch.__version__}, {args.threads} thread(s), "
        f"{platform.processor() or platform.machine()}"
    )
    print("\n| stage | records/s (template backends, tiny CLIP) |\n|---|---|")
    for stage, rate in stage_throughput(args.repeat):
        print(f"| {stage} | {rate:.1f} |")
    unbatched, batched, ratio = filter_throughput(args.objects, args.phrases)
    print("\n| CLIP filter (ViT-B/32 QuickGELU, 224 px) | phrases/s |\n|---|---|")
    print(f"| unbatched (one phrase per forward) | {unbatched:.2f} |")
    print(f"| batched (one text forward per object, image embeddings reused) | {batched:.2f} |")
    print(f"\nbatched / unbatched: {ratio:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
