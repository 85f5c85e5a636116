"""``instructdet`` command line: build | generate | merge | validate | filter | export | stats |
evaluate | info | demo. The only module that parses arguments or prints."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instructdet.plugin import METHOD
from papers_shared.cli_utils import add_command, add_run_flags, build_package_parser, parse_and_run

logger = logging.getLogger(__name__)

SOURCES = ("refcoco", "seqtr", "uninext", "flickr30k", "coco", "objects365", "sample")


def _read_any(path: Path) -> Any:
    """A ``.jsonl`` file as records, anything else as one JSON document."""
    from instructdet.data.records import read_jsonl

    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}") from None


def _write_any(path: Path, data: Any) -> None:
    from instructdet.data.records import write_json, write_jsonl

    if path.suffix == ".jsonl":
        write_jsonl(path, data)
    else:
        write_json(path, data)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if getattr(args, "json", False) else text)


# ------------------------------------------------------------------------------------ build
def _build(args: argparse.Namespace) -> int:
    from instructdet.data import converters
    from instructdet.data.sample import sample_records

    if args.source == "refcoco":
        if args.refs is None or args.instances is None:
            raise ValueError(
                "--source refcoco needs --refs refs(unc).p and --instances instances.json"
            )
        records = converters.from_refcoco_raw(args.refs, args.instances, split=args.split)
    elif args.source == "seqtr":
        if args.input is None or args.split is None:
            raise ValueError("--source seqtr needs --input instances.json and --split")
        records = converters.from_seqtr(args.input, args.split)
    elif args.source == "uninext":
        if args.input is None:
            raise ValueError("--source uninext needs --input instances_<split>.json")
        records = converters.from_uninext(args.input)
    elif args.source == "flickr30k":
        if args.input is None or args.ids is None:
            raise ValueError(
                "--source flickr30k needs --input <Flickr30K Entities root> and --ids FILE"
            )
        ids = [line.strip() for line in Path(args.ids).read_text().splitlines() if line.strip()]
        records = converters.from_flickr30k(args.input, ids)
    elif args.source in ("coco", "objects365"):
        if args.input is None:
            raise ValueError(f"--source {args.source} needs --input <detection json>")
        records = converters.from_detection(
            args.input, max_images=args.max_images, seed=args.seed, source=args.source
        )
    else:
        records = sample_records()
    _write_any(args.output, records)
    objects = sum(len(r["bboxes"]) for r in records)
    _emit(
        args,
        {"records": len(records), "objects": objects, "output": str(args.output)},
        f"wrote {len(records)} records ({objects} objects) to {args.output}",
    )
    return 0


# --------------------------------------------------------------------------------- generate
def _backend(kind: str, role: str, model: str | None, args: argparse.Namespace) -> Any:
    from instructdet.models.backends import create_backend

    if kind == "template":
        return create_backend("template", role)
    if model is None:
        raise ValueError(f"the {kind} {role} backend needs a model name (see --{role}-model)")
    if kind == "hf":
        return create_backend("hf", role, model=model, device=_device(args.device))
    if kind == "openai":
        return create_backend(
            "openai",
            role,
            model=model,
            base_url=args.openai_base_url,
            timeout=args.openai_timeout,
            max_retries=args.openai_retries,
        )
    raise ValueError(f"backend kind {kind!r} is not available from the command line")


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _generate(args: argparse.Namespace) -> int:
    from instructdet.config import PipelineConfig
    from instructdet.data.records import read_jsonl
    from instructdet.data.sample import sample_image_loader
    from instructdet.models.embedder import BertPoolerEmbedder, HashingEmbedder
    from instructdet.pipeline.runner import Pipeline, folder_image_loader
    from papers_shared.sharding import parse_shard

    cfg = PipelineConfig.from_file(args.config) if args.config else PipelineConfig()
    overrides: dict[str, Any] = {"seed": args.seed}
    if args.stages:
        overrides["stages"] = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    if args.dbscan_eps is not None:
        overrides["dbscan_eps"] = args.dbscan_eps
    cfg = PipelineConfig.from_dict({**cfg.to_dict(), **overrides})
    records = read_jsonl(args.records)
    if args.output_dir is None:
        raise ValueError(
            "--output-dir is required (the run folder for checkpoints and records.jsonl)"
        )
    image_loader = (
        folder_image_loader(args.image_root, dict(p.split("=", 1) for p in args.prefix))
        if args.image_root
        else (sample_image_loader if all(r.get("source") == "skimage" for r in records) else None)
    )
    scorer = None
    if "clip_filter" in cfg.stages or "cluster_filter" in cfg.stages:
        if args.clip_pretrained == "random-tiny":
            from instructdet.demo import tiny_clip_scorer

            scorer = tiny_clip_scorer(args.seed)
        else:
            from instructdet.models.clip_filter import create_clip_scorer

            scorer = create_clip_scorer(
                args.clip_model,
                args.clip_pretrained,
                device=_device(args.device),
                batch_size=args.clip_batch_size,
            )
    embedder = None
    if "clusters" in cfg.stages:
        embedder = (
            HashingEmbedder()
            if args.embedder == "hashing"
            else BertPoolerEmbedder.from_pretrained(args.embedder)
        )
    pipeline = Pipeline(
        cfg,
        llm=_backend(args.llm, "llm", args.llm_model, args),
        caption_vlm=_backend(args.caption_vlm, "vlm", args.caption_vlm_model, args),
        local_vlm=_backend(args.local_vlm, "vlm", args.local_vlm_model, args),
        scorer=scorer,
        embedder=embedder,
        image_loader=image_loader,
        prompt_dirs={
            k: v
            for k, v in (
                ("gen_instruct", args.prompts_phrases),
                ("multi_tgt", args.prompts_summary),
                ("level_instruct", args.prompts_levels),
            )
            if v
        },
        progress=args.progress,
    )
    shard = parse_shard(args.shard) if args.shard else None
    out = pipeline.run(
        records, args.output_dir, resume=args.resume, overwrite=args.overwrite, shard=shard
    )
    done = " (nothing left to do: every stage was already done)" if pipeline.nothing_to_do else ""
    _emit(
        args,
        {
            "records": len(out),
            "output": str(args.output_dir / "records.jsonl"),
            "nothing_to_do": pipeline.nothing_to_do,
        },
        f"{len(out)} records -> {args.output_dir / 'records.jsonl'}{done}",
    )
    return 0


# ------------------------------------------------------------------------------ merge & co
def _merge(args: argparse.Namespace) -> int:
    from instructdet.data.export import merge_exports
    from instructdet.pipeline.runner import merge_shards

    parts = [_read_any(p) for p in args.inputs]
    if all(isinstance(p, list) for p in parts):
        merged: Any = merge_shards(parts)
        count = len(merged)
    elif all(isinstance(p, dict) for p in parts):
        merged = merge_exports(parts)
        count = len(merged["images"])
    else:
        raise ValueError(
            "merge takes only working-record .jsonl files or only exported .json files"
        )
    _write_any(args.output, merged)
    _emit(
        args,
        {"entries": count, "output": str(args.output)},
        f"merged {len(parts)} files: {count} entries -> {args.output}",
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from instructdet.data.export import validate_export, validate_records

    data = _read_any(args.file)
    problems = (
        validate_records(data)
        if isinstance(data, list)
        else validate_export(data, image_root=args.image_root)
    )
    _emit(
        args,
        {"problems": [str(p) for p in problems], "valid": not problems},
        "\n".join(str(p) for p in problems) if problems else f"{args.file}: valid",
    )
    return 1 if problems else 0


def _export(args: argparse.Namespace) -> int:
    from instructdet.data.converters import from_uninext
    from instructdet.data.export import export_indet

    data = _read_any(args.input)
    if isinstance(data, list):
        result: Any = export_indet(data, export_intersections=args.export_intersections)
        count = len(result["images"])
    else:
        result = from_uninext(data)
        count = len(result)
    _write_any(args.output, result)
    _emit(args, {"entries": count, "output": str(args.output)}, f"{count} entries -> {args.output}")
    return 0


def _filter(args: argparse.Namespace) -> int:
    data = _read_any(args.input)
    if not isinstance(data, dict):
        raise ValueError(
            "filter works on an exported .json file (use 'generate --stages clip_filter' on records)"
        )
    levels = {int(v) for v in args.levels.split(",")} if args.levels else None
    images, keep_ids = [], set()
    removed = 0
    for img in data["images"]:
        pairs = list(zip(img["expressions"], img.get("levels") or [None] * len(img["expressions"])))
        kept, seen = [], set()
        for expr, level in pairs:
            words = len(expr.split())
            if words < args.min_words or (args.max_words and words > args.max_words):
                continue
            if levels is not None and level not in levels:
                continue
            if args.dedupe and expr.lower() in seen:
                continue
            seen.add(expr.lower())
            kept.append((expr, level))
        removed += len(pairs) - len(kept)
        if kept:
            new = dict(img, expressions=[e for e, _ in kept])
            if "levels" in img:
                new["levels"] = [lv for _, lv in kept]
            images.append(new)
            keep_ids.add(img["id"])
    result = {
        **data,
        "images": images,
        "annotations": [a for a in data["annotations"] if a["image_id"] in keep_ids],
    }
    _write_any(args.output, result)
    _emit(
        args,
        {"removed_expressions": removed, "entries": len(images)},
        f"removed {removed} expressions; {len(images)} entries -> {args.output}",
    )
    return 0


def _stats(args: argparse.Namespace) -> int:
    from instructdet.data.export import dataset_stats, export_indet

    data = _read_any(args.file)
    stats = dataset_stats(export_indet(data) if isinstance(data, list) else data)
    text = "\n".join(f"{k}: {v}" for k, v in stats.items())
    _emit(args, stats, text)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from instructdet.evaluate import evaluate_predictions

    result = evaluate_predictions(
        args.ground_truth, args.predictions, score_threshold=args.score_threshold
    )
    if args.output:
        from instructdet.data.records import write_json

        write_json(args.output, result)

    def fmt(m: dict[str, Any]) -> str:
        acc = "n/a" if m["acc@0.5"] is None else f"{m['acc@0.5']:.4f}"
        return (
            f"samples {m['samples']}  acc@0.5 {acc}  AP {m['AP']:.4f}  AP50 {m['AP50']:.4f}  "
            f"AP75 {m['AP75']:.4f}  P {m['precision']:.4f}  R {m['recall']:.4f}  F1 {m['f1']:.4f}"
        )

    lines = [f"overall        {fmt(result['overall'])}"]
    for key in ("single_target", "multi_target"):
        if result[key]["samples"]:
            lines.append(f"{key:<14} {fmt(result[key])}")
    for level, m in result["per_level"].items():
        lines.append(f"level {level:<8} {fmt(m)}")
    _emit(args, result, "\n".join(lines))
    return 0


# ---------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser, sub = build_package_parser(
        METHOD,
        "InstructDET: generate diverse referring instructions (InDET pipeline), convert, validate and "
        "evaluate referring-object-detection data.",
        ["instructdet demo --quick", "instructdet build --source sample --output records.jsonl"],
    )

    p = add_command(
        sub,
        "build",
        help="convert a referring / detection dataset to working records (.jsonl)",
        examples=[
            "instructdet build --source sample --output records.jsonl",
            "instructdet build --source refcoco --refs 'refs(unc).p' --instances instances.json --split testA --output testA.jsonl",
        ],
    )
    p.add_argument("--source", choices=SOURCES, default="sample", help="input format")
    p.add_argument(
        "--input",
        type=Path,
        default=None,
        help="input file or folder (seqtr/uninext/flickr30k/coco/objects365)",
    )
    p.add_argument(
        "--refs", type=Path, default=None, help="RefCOCO refs pickle, e.g. 'refs(unc).p'"
    )
    p.add_argument(
        "--instances", type=Path, default=None, help="COCO instances.json for --source refcoco"
    )
    p.add_argument(
        "--split",
        default=None,
        help="split to keep (refcoco: train/val/testA/testB; seqtr: required)",
    )
    p.add_argument(
        "--ids", type=Path, default=None, help="file of Flickr30K image ids, one per line"
    )
    p.add_argument(
        "--max-images", type=int, default=None, help="sample this many photos (coco/objects365)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for --max-images sampling")
    p.add_argument("--output", type=Path, default=Path("records.jsonl"), help="output .jsonl")
    p.set_defaults(handler=_build)

    p = add_command(
        sub,
        "generate",
        help="run the InDET pipeline on working records, resumable and shardable",
        examples=[
            "instructdet generate records.jsonl --output-dir runs/indet --clip-pretrained random-tiny --embedder hashing --dbscan-eps 1.0",
            "instructdet generate records.jsonl --output-dir runs/indet-0 --shard 0/4 --llm hf --llm-model lmsys/vicuna-13b-v1.3 --image-root coco/train2014",
        ],
    )
    p.add_argument("records", type=Path, help="working records (.jsonl)")
    add_run_flags(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --output-dir")
    p.add_argument("--shard", default=None, help="i/n: process records i, i+n, ... (0 <= i < n)")
    p.add_argument(
        "--stages", default=None, help="comma-separated subset of the stages (default: all)"
    )
    p.add_argument("--image-root", type=Path, default=None, help="folder holding the images")
    p.add_argument(
        "--prefix",
        action="append",
        default=[],
        metavar="SOURCE=SUBDIR",
        help="image sub-folder per record source, e.g. coco=train2014 (repeatable)",
    )
    for role, default in (
        ("llm", "template"),
        ("caption-vlm", "template"),
        ("local-vlm", "template"),
    ):
        p.add_argument(
            f"--{role}",
            choices=("template", "hf", "openai"),
            default=default,
            help=f"{role} backend",
        )
        p.add_argument(
            f"--{role}-model",
            default=None,
            help=f"{role} model: hub name, local path or endpoint model",
        )
    p.add_argument(
        "--openai-base-url", default="https://api.openai.com/v1", help="OpenAI-compatible endpoint"
    )
    p.add_argument("--openai-timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--openai-retries", type=int, default=3, help="retries with exponential backoff")
    p.add_argument(
        "--clip-model", default="ViT-B-32-quickgelu", help="open_clip model of the filter"
    )
    p.add_argument(
        "--clip-pretrained",
        default="openai",
        help="open_clip tag, local weights file, or random-tiny (offline stand-in)",
    )
    p.add_argument("--clip-batch-size", type=int, default=64, help="phrases per CLIP text forward")
    p.add_argument(
        "--embedder", default="bert-base-uncased", help="BERT name/path for clustering, or hashing"
    )
    p.add_argument(
        "--dbscan-eps", type=float, default=None, help="DBSCAN eps (default: the config's, 5.0)"
    )
    p.add_argument(
        "--prompts-phrases", type=Path, default=None, help="prompt folder for the phrase task"
    )
    p.add_argument(
        "--prompts-summary", type=Path, default=None, help="prompt folder for the summary task"
    )
    p.add_argument(
        "--prompts-levels", type=Path, default=None, help="prompt folder for the level task"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (None: when stderr is a terminal)",
    )
    p.set_defaults(handler=_generate)

    p = add_command(
        sub,
        "merge",
        help="concatenate shard outputs (.jsonl, input order) or exports (.json, ids renumbered)",
        examples=[
            "instructdet merge runs/a/records.jsonl runs/b/records.jsonl --output all.jsonl",
            "instructdet merge part1.json part2.json --output indet.json",
        ],
    )
    p.add_argument("inputs", type=Path, nargs="+", help="files to merge")
    p.add_argument("--output", type=Path, default=Path("merged.json"), help="output file")
    p.set_defaults(handler=_merge)

    p = add_command(
        sub,
        "validate",
        help="report every problem of an export (.json) or working records (.jsonl)",
        examples=["instructdet validate indet.json", "instructdet validate records.jsonl --json"],
    )
    p.add_argument("file", type=Path, help="file to check")
    p.add_argument(
        "--image-root", type=Path, default=None, help="also check that image files exist"
    )
    p.set_defaults(handler=_validate)

    p = add_command(
        sub,
        "filter",
        help="drop expressions of an export by level, word count or duplicates",
        examples=[
            "instructdet filter indet.json --levels 0,1,2 --output easy.json",
            "instructdet filter indet.json --min-words 2 --max-words 20 --dedupe --output clean.json",
        ],
    )
    p.add_argument("input", type=Path, help="exported .json")
    p.add_argument("--levels", default=None, help="comma-separated levels to keep (e.g. 0,1,2)")
    p.add_argument("--min-words", type=int, default=1, help="shortest expression kept")
    p.add_argument("--max-words", type=int, default=0, help="longest expression kept (0: no limit)")
    p.add_argument(
        "--dedupe", action="store_true", help="drop case-insensitive duplicates per entry"
    )
    p.add_argument("--output", type=Path, default=Path("filtered.json"), help="output .json")
    p.set_defaults(handler=_filter)

    p = add_command(
        sub,
        "export",
        help="working records (.jsonl) -> InDET COCO JSON, or back",
        examples=[
            "instructdet export runs/indet/records.jsonl --output indet.json",
            "instructdet export instances_val.json --output val.jsonl",
        ],
    )
    p.add_argument("input", type=Path, help=".jsonl records or .json export")
    p.add_argument(
        "--output", type=Path, default=Path("indet.json"), help="output (.json or .jsonl)"
    )
    p.add_argument(
        "--export-intersections",
        action="store_true",
        help="also export shared-phrase groups (the released exporter drops them)",
    )
    p.set_defaults(handler=_export)

    p = add_command(
        sub,
        "stats",
        help="counts per level, single vs multi target, words per expression",
        examples=[
            "instructdet stats indet.json",
            "instructdet stats runs/indet/records.jsonl --json",
        ],
    )
    p.add_argument("file", type=Path, help=".json export or .jsonl records")
    p.set_defaults(handler=_stats)

    p = add_command(
        sub,
        "evaluate",
        help="Acc@0.5, AP and set P/R/F1 of ROD predictions, per level and target count",
        examples=[
            "instructdet evaluate indet_test.json predictions.json",
            "instructdet evaluate indet_test.json predictions.json --score-threshold 0.3 --output metrics.json",
        ],
    )
    p.add_argument("ground_truth", type=Path, help="exported ground truth (.json)")
    p.add_argument(
        "predictions",
        type=Path,
        help='JSON list of {"image_id", "expr_idx"?, "bbox": [x, y, w, h], "score"}',
    )
    p.add_argument(
        "--score-threshold", type=float, default=0.5, help="score threshold of the set metrics"
    )
    p.add_argument("--output", type=Path, default=None, help="also write the metrics JSON here")
    p.set_defaults(handler=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
