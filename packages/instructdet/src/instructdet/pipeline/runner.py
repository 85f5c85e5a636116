"""The InDET pipeline: switchable ``records -> records`` stages with resumable JSONL checkpoints.

Each stage reads every record and writes ``<output>/<NN>_<stage>.jsonl`` atomically when done; while
it runs, ``<NN>_<stage>.partial.jsonl`` is rewritten atomically every ``checkpoint_every`` records, so
an interrupted run resumes at the last checkpoint and a crash never leaves a truncated file.

Randomness: record r in stage s draws from ``random.Random(seed_hash(seed, s, key(r)))`` and passes a
seed derived from it to the backends, so a record's result does not depend on which other records
share its run. Hence ``--shard i/n`` (records ``i, i + n, ...``) reproduces the full run: concatenating
the shards' outputs and sorting by ``source_index`` gives the full run's file.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from instructdet.config import STAGES, PipelineConfig
from instructdet.data.records import (
    SINGLE_KEYS,
    Record,
    normalize_record,
    read_jsonl,
    record_key,
    write_json,
    write_jsonl,
)
from instructdet.models.clip_filter import Scorer, filter_phrases
from instructdet.pipeline import global_stage, local_stage, multi
from instructdet.pipeline.prompts import (
    PromptSet,
    build_messages,
    default_prompt_dir,
    level_query,
    load_prompt_set,
)
from papers_shared.progress import progress_bar
from papers_shared.seeding import seed_hash
from papers_shared.sharding import take_shard

__all__ = ["Pipeline", "PipelineRunError", "ImageLoader", "folder_image_loader", "merge_shards"]

logger = logging.getLogger(__name__)

ImageLoader = Callable[[Record], Image.Image]


class PipelineRunError(RuntimeError):
    """The output folder holds another run, or a partial file does not match the input."""


def folder_image_loader(
    image_root: str | Path, prefixes: dict[str, str] | None = None
) -> ImageLoader:
    """Images at ``image_root / prefix / filename``; ``prefixes`` maps a record's ``source`` field
    (e.g. ``coco``, ``flickr30k``, ``objects365``) to a sub-folder."""
    root = Path(image_root)
    prefixes = dict(prefixes or {})

    def load(record: Record) -> Image.Image:
        sub = prefixes.get(str(record.get("source", "")), "")
        path = root / sub / str(record["filename"])
        if not path.is_file():
            raise FileNotFoundError(
                f"image {path} not found (record {record_key(record)!r}); check --image-root"
            )
        with Image.open(path) as im:
            return im.convert("RGB")

    return load


def _backend_seed(rng: random.Random) -> int:
    return rng.getrandbits(31)


@dataclass
class Pipeline:
    """The stages of :data:`~instructdet.config.STAGES` around pluggable models.

    Args:
        config: switches and constants.
        llm: LLM backend (phrases, summaries, levels).
        caption_vlm: VLM backend for captions (A1).
        local_vlm: VLM backend for visual prompts.
        scorer: CLIP scorer for the filters (``ClipScorer`` or any ``scores(image, texts)``).
        embedder: text embedder for clustering (``embed(texts) -> (N, D)``).
        image_loader: record -> PIL image (needed by caption, vlm_phrases and the filters).
        prompt_dirs: per task (gen_instruct, multi_tgt, level_instruct) a prompt folder; the
            package's own wording by default.
    """

    config: PipelineConfig = field(default_factory=PipelineConfig)
    llm: Any = None
    caption_vlm: Any = None
    local_vlm: Any = None
    scorer: Scorer | None = None
    embedder: Any = None
    image_loader: ImageLoader | None = None
    prompt_dirs: dict[str, str | Path] = field(default_factory=dict)
    progress: bool | None = False

    def __post_init__(self) -> None:
        self._prompts: dict[str, PromptSet] = {}
        self.nothing_to_do = False
        needs = {
            "caption": ("caption_vlm", "image_loader"),
            "llm_phrases": ("llm",),
            "vlm_phrases": ("local_vlm", "image_loader"),
            "clip_filter": ("scorer", "image_loader"),
            "clusters": ("embedder",),
            "summaries": ("llm",),
            "cluster_filter": ("scorer", "image_loader"),
            "levels": ("llm",),
        }
        for stage in self.config.stages:
            missing = [name for name in needs.get(stage, ()) if getattr(self, name) is None]
            if missing:
                raise ValueError(
                    f"stage {stage!r} needs {', '.join(missing)}; pass it or drop the stage from "
                    "config.stages"
                )

    # ------------------------------------------------------------------ helpers
    def prompts(self, task: str) -> PromptSet:
        if task not in self._prompts:
            folder = self.prompt_dirs.get(task) or default_prompt_dir(task)
            self._prompts[task] = load_prompt_set(folder, level_format=task == "level_instruct")
        return self._prompts[task]

    def _rng(self, stage: str, record: Record) -> random.Random:
        return random.Random(seed_hash(self.config.seed, stage, record_key(record)))

    def _image(self, record: Record) -> Image.Image:
        assert self.image_loader is not None  # checked in __post_init__ for the stages that need it
        return self.image_loader(record)

    # ------------------------------------------------------------------ stages
    def caption(self, record: Record, rng: random.Random) -> Record:
        if record.get("caption"):
            return record
        image = self._image(record)
        captions = []
        for _ in range(self.config.caption_repeat):
            request = global_stage.caption_request(
                record.get("hints") or [], rng, use_hints=self.config.caption_hints
            )
            answer = self.caption_vlm.chat(
                image,
                [{"role": "user", "content": request}],
                seed=_backend_seed(rng),
                **self.config.caption_generation.as_kwargs(),
            )
            captions.append(" ".join(str(answer).split("\n")).strip())
        record["caption"] = "\n".join(captions)
        return record

    def llm_phrases(self, record: Record, rng: random.Random) -> Record:
        objects = record["bboxes"]
        if not objects:
            return record
        query = global_stage.build_llm_query(record)
        messages = build_messages(self.prompts("gen_instruct"), query)
        answer = self.llm.chat(
            messages, seed=_backend_seed(rng), **self.config.llm_generation.as_kwargs()
        )
        phrases = global_stage.parse_llm_answer(answer, [obj["expressions"] for obj in objects])
        for obj, found in zip(objects, phrases):
            obj["expressions_llm"] = found
        return record

    def _describe(self, image: Image.Image, box: Sequence[float], rng: random.Random) -> list[str]:
        cfg = self.config
        marked = local_stage.draw_box(image, box, inclusive_lower=cfg.inclusive_lower)
        requests = local_stage.sample_requests(rng, cfg.local_prompts_per_object)
        phrases: dict[str, None] = {}
        history: list[dict[str, str]] = []
        for request in requests:
            turn = {"role": "user", "content": request}
            messages = [*history, turn] if cfg.share_conversation else [turn]
            answer = str(
                self.local_vlm.chat(
                    marked, messages, seed=_backend_seed(rng), **cfg.vlm_generation.as_kwargs()
                )
            )
            if cfg.share_conversation:
                history = [*messages, {"role": "assistant", "content": answer}]
            cleaned = local_stage.clean_vlm_answer(answer, rng)
            if cleaned:
                phrases.setdefault(cleaned, None)
        return list(phrases)

    def vlm_phrases(self, record: Record, rng: random.Random) -> Record:
        image = self._image(record)
        for obj in record["bboxes"]:
            boxes = obj["bbox"]
            if len(boxes) == 1:
                obj["expressions_vlm"] = self._describe(image, boxes[0], rng)
            elif self.config.single_only:
                obj["expressions_vlm"] = []
            else:
                obj["expressions_vlm"] = []
                obj["expressions_single"] = [
                    {
                        "bbox": [box],
                        "id": i,
                        "expressions": list(obj["expressions"]),
                        "expressions_vlm": self._describe(image, box, rng),
                    }
                    for i, box in enumerate(boxes)
                ]
        return record

    def _references(self, obj: Record) -> list[str]:
        refs = list(obj.get("expressions") or [])
        if not refs and obj.get("category_name"):
            refs = [str(obj["category_name"])]
        return refs

    def _filter(
        self,
        image: Image.Image,
        boxes: Sequence[Sequence[float]],
        refs: list[str],
        phrases: list[str],
    ):
        assert self.scorer is not None
        return filter_phrases(
            self.scorer,
            image,
            boxes,
            refs,
            phrases,
            alpha=self.config.clip_alpha,
            tolerance=self.config.clip_tolerance,
            inclusive_lower=self.config.inclusive_lower,
        )

    def clip_filter(self, record: Record, rng: random.Random) -> Record:
        image = self._image(record)
        for obj in record["bboxes"]:
            refs = self._references(obj)
            for key in ("expressions_llm", "expressions_vlm"):
                if key in obj:
                    result = self._filter(image, obj["bbox"], refs, obj[key])
                    obj[key], obj[f"{key}_filtered"] = result.kept, result.dropped
            for item in obj.get("expressions_single") or []:
                result = self._filter(image, item["bbox"], refs, item.get("expressions_vlm") or [])
                item["expressions_vlm"], item["expressions_vlm_filtered"] = (
                    result.kept,
                    result.dropped,
                )
        return record

    def shared_phrases(self, record: Record, rng: random.Random) -> Record:
        return multi.shared_phrases(record)

    def clusters(self, record: Record, rng: random.Random) -> Record:
        groups = multi.cluster_objects(
            record,
            self.embedder,
            eps=self.config.dbscan_eps,
            min_samples=self.config.dbscan_min_samples,
        )
        record["clusters"] = [{"bbox_ids": g} for g in groups]
        return record

    def summaries(self, record: Record, rng: random.Random) -> Record:
        groups = multi.merge_groups(
            [c["bbox_ids"] for c in record.get("clusters_intsc") or []],
            [c["bbox_ids"] for c in record.get("clusters") or []],
        )
        prompts = self.prompts("multi_tgt")
        out = []
        for members in groups:
            messages = build_messages(prompts, multi.summary_query(record, members))
            answer = self.llm.chat(
                messages, seed=_backend_seed(rng), **self.config.llm_generation.as_kwargs()
            )
            phrases = multi.parse_summary(str(answer))
            if phrases:
                out.append({"bbox_ids": list(members), "expressions_llm": phrases})
        record["clusters"] = out
        return record

    def cluster_filter(self, record: Record, rng: random.Random) -> Record:
        image = self._image(record)
        for cluster in record.get("clusters") or []:
            kept = list(cluster.get("expressions_llm") or [])
            dropped: list[str] = []
            for bbox_id in cluster["bbox_ids"]:
                obj = record["bboxes"][bbox_id]
                result = self._filter(image, obj["bbox"], self._references(obj), kept)
                kept = result.kept
                dropped += result.dropped
            cluster["expressions_llm"], cluster["expressions_llm_filtered"] = kept, dropped
        return record

    def conjunctions(self, record: Record, rng: random.Random) -> Record:
        cfg = self.config
        record["clusters_conj"] = multi.conjunctions(
            record,
            rng,
            sizes=cfg.conjunction_sizes,
            max_combos=cfg.conjunction_max_combos,
            draws=cfg.conjunction_draws,
            and_prob=cfg.conjunction_and_prob,
            min_words=cfg.conjunction_min_words,
            max_words=cfg.conjunction_max_words,
        )
        return record

    def levels(self, record: Record, rng: random.Random) -> Record:
        prompts = self.prompts("level_instruct")
        jobs: list[tuple[Record, str, int]] = []
        batch = []
        for obj in record["bboxes"]:
            for key in SINGLE_KEYS:
                if key not in obj:
                    continue
                obj[f"{key}_levels"] = [1] * len(obj[key])
                for i, phrase in enumerate(obj[key]):
                    jobs.append((obj, key, i))
                    batch.append(
                        build_messages(
                            prompts,
                            level_query(phrase),
                            wrap_task=self.config.official_level_wrapping,
                        )
                    )
        gen = self.config.llm_generation.as_kwargs()
        seed = _backend_seed(rng)
        if hasattr(self.llm, "chat_batch"):
            answers = list(self.llm.chat_batch(batch, seed=seed, **gen)) if batch else []
        else:
            answers = [self.llm.chat(m, seed=seed + i, **gen) for i, m in enumerate(batch)]
        for (obj, key, i), answer in zip(jobs, answers):
            obj[f"{key}_levels"][i] = multi.parse_level(str(answer))
        for cluster in record.get("clusters") or []:
            cluster["expressions_llm_levels"] = [multi.CLUSTER_LEVEL] * len(
                cluster.get("expressions_llm") or []
            )
        for cluster in record.get("clusters_intsc") or []:
            cluster["expressions_levels"] = [multi.CLUSTER_LEVEL] * len(
                cluster.get("expressions") or []
            )
        for cluster in record.get("clusters_conj") or []:
            cluster["expressions_levels"] = [multi.CONJUNCTION_LEVEL] * len(
                cluster.get("expressions") or []
            )
        return record

    # ------------------------------------------------------------------ running
    def apply(self, stage: str, record: Record) -> Record:
        """Run one stage on one record (a deep copy is returned)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; valid stages are {list(STAGES)}")
        record = json.loads(json.dumps(record))
        return getattr(self, stage)(record, self._rng(stage, record))

    def run_records(self, records: Sequence[Record]) -> list[Record]:
        """All configured stages in memory, no files."""
        out = [normalize_record(json.loads(json.dumps(r))) for r in records]
        for stage in self.config.stages:
            out = [self.apply(stage, r) for r in out]
        return out

    def run(
        self,
        records: Sequence[Record],
        output_dir: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        shard: tuple[int, int] | None = None,
    ) -> list[Record]:
        """Run the configured stages with per-stage checkpoints in ``output_dir``.

        A folder holding another run is refused unless ``resume`` (continue; the saved config must
        be equal) or ``overwrite`` (start afresh). Returns the last stage's records, also written to
        ``output_dir/records.jsonl``.
        """
        out = Path(output_dir)
        config_path = out / "config.json"
        settings = {"pipeline": self.config.to_dict(), "shard": list(shard) if shard else None}
        if config_path.exists():
            if overwrite:
                shutil.rmtree(out)
            elif resume:
                saved = json.loads(config_path.read_text(encoding="utf-8"))
                if saved != settings:
                    diff = sorted(
                        k
                        for k in set(saved.get("pipeline", {})) | set(settings["pipeline"])
                        if saved.get("pipeline", {}).get(k) != settings["pipeline"].get(k)
                    )
                    if saved.get("shard") != settings["shard"]:
                        diff.append("shard")
                    raise PipelineRunError(
                        f"{out} holds a run with other settings ({', '.join(diff)}); use another "
                        "folder or --overwrite"
                    )
            else:
                raise PipelineRunError(
                    f"{out} already holds a run; pass --resume to continue it or --overwrite to replace it"
                )
        out.mkdir(parents=True, exist_ok=True)
        write_json(config_path, settings)

        current = []
        for index, record in enumerate(records):
            record = normalize_record(json.loads(json.dumps(record)))
            record.setdefault("source_index", index)
            current.append(record)
        if shard is not None:
            current = take_shard(current, *shard)
        self.nothing_to_do = True
        for number, stage in enumerate(self.config.stages):
            final = out / f"{number:02d}_{stage}.jsonl"
            if final.exists():
                current = read_jsonl(final)
                logger.info("stage %s already done (%d records)", stage, len(current))
                continue
            self.nothing_to_do = False
            partial = out / f"{number:02d}_{stage}.partial.jsonl"
            done = read_jsonl(partial) if partial.exists() else []
            for have, want in zip(done, current):
                if have.get("source_index") != want.get("source_index"):
                    raise PipelineRunError(
                        f"{partial} does not match the input records; remove it or use --overwrite"
                    )
            results = list(done)
            bar = progress_bar(
                current[len(done) :],
                enabled=self.progress,
                desc=stage,
                unit="rec",
                total=len(current),
                initial=len(done),
            )
            for record in bar:
                results.append(self.apply(stage, record))
                if len(results) % self.config.checkpoint_every == 0:
                    write_jsonl(partial, results)
            write_jsonl(final, results)
            if partial.exists():
                partial.unlink()
            current = results
        if self.nothing_to_do:
            logger.warning("nothing left to do: every stage of %s is already done", out)
        write_jsonl(out / "records.jsonl", current)
        return current


def merge_shards(parts: Sequence[Sequence[Record]]) -> list[Record]:
    """Concatenate shard outputs in input order (by ``source_index``)."""
    merged = [r for part in parts for r in part]
    if any("source_index" not in r for r in merged):
        raise ValueError("every sharded record needs its 'source_index' to be merged in order")
    return sorted(merged, key=lambda r: int(r["source_index"]))
