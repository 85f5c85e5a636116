"""Export to the InDET / UNINEXT COCO layout, merging, validation and statistics.

The layout (one ``images`` entry per referring set, not per photo)::

    {"images": [{"file_name", "height", "width", "id": ref_id, "expressions": [...], "levels"?: [...]}],
     "annotations": [{"bbox": [x, y, w, h], "image_id": ref_id, "category_id": 1, "iscrowd": 0,
                      "id": ann_id, "area": w * h}],
     "categories": [{"supercategory": "object", "id": 1, "name": "object"}]}

Per photo: one entry per object (its original, then visual-prompt, then LLM expressions, first-seen
deduplicated, levels aligned), then the LLM cluster summaries, then the conjunctions, and the
shared-phrase groups only with ``export_intersections=True`` (the released exporter drops them).
Ids start at 0. Compared with the released exporter, annotation ids are unique (its cluster loop
reused the member index as the id) and ``levels`` always has one entry per expression (-1 where a
phrase was never graded).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructdet.data.records import SINGLE_KEYS, Record

__all__ = [
    "CATEGORIES",
    "export_indet",
    "merge_exports",
    "Problem",
    "validate_export",
    "validate_records",
    "dataset_stats",
]

CATEGORIES = [{"supercategory": "object", "id": 1, "name": "object"}]
UNGRADED = -1


def _single_entry(obj: Record) -> tuple[list[str], list[int]]:
    seen: dict[str, int] = {}
    for key in SINGLE_KEYS:
        phrases = obj.get(key) or []
        levels = obj.get(f"{key}_levels")
        if levels is not None and len(levels) != len(phrases):
            levels = None
        for i, phrase in enumerate(phrases):
            if phrase not in seen:
                seen[phrase] = int(levels[i]) if levels is not None else UNGRADED
    return list(seen), list(seen.values())


def _group_entry(cluster: Record, key: str) -> tuple[list[str], list[int]]:
    phrases = list(dict.fromkeys(cluster.get(key) or []))
    levels = cluster.get(f"{key}_levels")
    if levels is None or len(levels) != len(cluster.get(key) or []):
        return phrases, [UNGRADED] * len(phrases)
    first = {}
    for phrase, level in zip(cluster.get(key) or [], levels):
        first.setdefault(phrase, int(level))
    return phrases, [first[p] for p in phrases]


def export_indet(
    records: Iterable[Record], *, export_intersections: bool = False
) -> dict[str, Any]:
    """Working records -> the InDET COCO JSON dict (entries without expressions are skipped)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []

    def add(
        record: Record, boxes: Sequence[Sequence[float]], phrases: list[str], levels: list[int]
    ) -> None:
        if not phrases:
            return
        ref_id = len(images)
        entry: dict[str, Any] = {
            "file_name": record["filename"],
            "height": int(record["height"]),
            "width": int(record["width"]),
            "id": ref_id,
            "expressions": phrases,
        }
        if any(level != UNGRADED for level in levels):
            entry["levels"] = levels
        images.append(entry)
        for box in boxes:
            x, y, w, h = (float(v) for v in box)
            annotations.append(
                {
                    "bbox": [x, y, w, h],
                    "image_id": ref_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "id": len(annotations),
                    "area": w * h,
                }
            )

    for record in records:
        objects = record["bboxes"]
        for obj in objects:
            add(record, obj["bbox"], *_single_entry(obj))

        def member_boxes(cluster: Record, objects: list[Record] = objects) -> list[Sequence[float]]:
            return [box for i in cluster["bbox_ids"] for box in objects[i]["bbox"]]

        for cluster in record.get("clusters") or []:
            add(record, member_boxes(cluster), *_group_entry(cluster, "expressions_llm"))
        for cluster in record.get("clusters_conj") or []:
            add(record, member_boxes(cluster), *_group_entry(cluster, "expressions"))
        if export_intersections:
            for cluster in record.get("clusters_intsc") or []:
                add(record, member_boxes(cluster), *_group_entry(cluster, "expressions"))
    return {"images": images, "annotations": annotations, "categories": list(CATEGORIES)}


def merge_exports(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate exported files, renumbering referring-set and annotation ids from 0."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for part in parts:
        remap: dict[Any, int] = {}
        for image in part.get("images", []):
            new = dict(image)
            remap[image["id"]] = new["id"] = len(images)
            images.append(new)
        for ann in part.get("annotations", []):
            if ann["image_id"] not in remap:
                raise ValueError(
                    f"annotation {ann.get('id')} points to image_id {ann['image_id']}, which its file "
                    "does not define"
                )
            new = dict(ann)
            new["image_id"] = remap[ann["image_id"]]
            new["id"] = len(annotations)
            annotations.append(new)
    return {"images": images, "annotations": annotations, "categories": list(CATEGORIES)}


@dataclass(frozen=True)
class Problem:
    """One validation finding: where (record / entry), which field, what is wrong."""

    where: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.message}"


def _check_box(box: Any, width: float, height: float, where: str, field: str) -> list[Problem]:
    if (
        not isinstance(box, (list, tuple))
        or len(box) != 4
        or not all(isinstance(v, (int, float)) for v in box)
    ):
        return [Problem(where, field, f"expected [x, y, w, h] numbers, got {box!r}")]
    x, y, w, h = box
    out = []
    if w <= 0 or h <= 0:
        out.append(Problem(where, field, f"width and height must be > 0, got {w} x {h}"))
    tol = 1.0
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        out.append(Problem(where, field, f"box {list(box)} leaves the {width} x {height} image"))
    return out


def validate_export(data: Any, *, image_root: str | Path | None = None) -> list[Problem]:
    """Every problem of an InDET COCO JSON dict (empty list: valid)."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return [Problem("file", "<root>", f"expected a JSON object, got {type(data).__name__}")]
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            problems.append(Problem("file", key, "missing or not a list"))
    if problems:
        return problems
    sizes: dict[Any, tuple[float, float]] = {}
    ids = Counter(img.get("id") for img in data["images"] if isinstance(img, dict))
    for n, img in enumerate(data["images"]):
        where = f"images[{n}] (id {img.get('id') if isinstance(img, dict) else '?'})"
        if not isinstance(img, dict):
            problems.append(Problem(where, "<entry>", "not an object"))
            continue
        for key, kind in (("file_name", str), ("height", int), ("width", int), ("id", int)):
            if not isinstance(img.get(key), kind):
                problems.append(Problem(where, key, f"missing or not {kind.__name__}"))
        if ids[img.get("id")] > 1:
            problems.append(Problem(where, "id", f"duplicate id {img.get('id')}"))
        if isinstance(img.get("width"), int) and isinstance(img.get("height"), int):
            if img["width"] <= 0 or img["height"] <= 0:
                problems.append(Problem(where, "width/height", "must be > 0"))
            sizes[img.get("id")] = (img["width"], img["height"])
        exprs = img.get("expressions")
        if (
            not isinstance(exprs, list)
            or not exprs
            or not all(isinstance(e, str) and e.strip() for e in exprs)
        ):
            problems.append(
                Problem(where, "expressions", "must be a non-empty list of non-empty strings")
            )
        levels = img.get("levels")
        if levels is not None:
            if (
                not isinstance(levels, list)
                or not isinstance(exprs, list)
                or len(levels) != len(exprs)
            ):
                problems.append(Problem(where, "levels", "must have one level per expression"))
            elif not all(isinstance(v, int) and -1 <= v <= 5 for v in levels):
                problems.append(Problem(where, "levels", "levels must be whole numbers in -1..5"))
        if (
            image_root is not None
            and isinstance(img.get("file_name"), str)
            and not (Path(image_root) / img["file_name"]).is_file()
        ):
            problems.append(Problem(where, "file_name", f"no file under {image_root}"))
    ann_ids = Counter(a.get("id") for a in data["annotations"] if isinstance(a, dict))
    covered = set()
    for n, ann in enumerate(data["annotations"]):
        where = f"annotations[{n}] (id {ann.get('id') if isinstance(ann, dict) else '?'})"
        if not isinstance(ann, dict):
            problems.append(Problem(where, "<entry>", "not an object"))
            continue
        if ann_ids[ann.get("id")] > 1:
            problems.append(Problem(where, "id", f"duplicate id {ann.get('id')}"))
        image_id = ann.get("image_id")
        if image_id not in sizes and image_id not in ids:
            problems.append(
                Problem(where, "image_id", f"orphan: no images entry with id {image_id}")
            )
            continue
        covered.add(image_id)
        width, height = sizes.get(image_id, (float("inf"), float("inf")))
        problems += _check_box(ann.get("bbox"), width, height, where, "bbox")
        if ann.get("category_id") != 1:
            problems.append(
                Problem(where, "category_id", f"expected 1, got {ann.get('category_id')}")
            )
    for n, img in enumerate(data["images"]):
        if isinstance(img, dict) and img.get("id") not in covered:
            problems.append(Problem(f"images[{n}] (id {img.get('id')})", "annotations", "no box"))
    return problems


def validate_records(records: Iterable[Record]) -> list[Problem]:
    """Every problem of working records (the JSONL layout)."""
    problems: list[Problem] = []
    for n, record in enumerate(records):
        where = f"record {n} ({record.get('filename', '?')})"
        for key, kind in (("filename", str), ("height", int), ("width", int), ("bboxes", list)):
            if not isinstance(record.get(key), kind):
                problems.append(Problem(where, key, f"missing or not {kind.__name__}"))
        if not isinstance(record.get("bboxes"), list):
            continue
        width, height = record.get("width", 0), record.get("height", 0)
        count = len(record["bboxes"])
        for i, obj in enumerate(record["bboxes"]):
            owhere = f"{where} bboxes[{i}]"
            if obj.get("bbox_id", i) != i:
                problems.append(
                    Problem(owhere, "bbox_id", f"expected {i}, got {obj.get('bbox_id')}")
                )
            boxes = obj.get("bbox")
            if not isinstance(boxes, list) or not boxes:
                problems.append(Problem(owhere, "bbox", "must be a non-empty list of boxes"))
            else:
                for j, box in enumerate(boxes):
                    problems += _check_box(box, width, height, owhere, f"bbox[{j}]")
            for key in SINGLE_KEYS:
                if (
                    key in obj
                    and f"{key}_levels" in obj
                    and len(obj[f"{key}_levels"]) != len(obj[key])
                ):
                    problems.append(Problem(owhere, f"{key}_levels", f"not aligned with {key}"))
        for ckey in ("clusters", "clusters_conj", "clusters_intsc"):
            for c, cluster in enumerate(record.get(ckey) or []):
                ids = cluster.get("bbox_ids")
                if not isinstance(ids, list) or not all(
                    isinstance(i, int) and 0 <= i < count for i in ids
                ):
                    problems.append(
                        Problem(
                            f"{where} {ckey}[{c}]", "bbox_ids", f"must index bboxes 0..{count - 1}"
                        )
                    )
    return problems


def dataset_stats(data: dict[str, Any]) -> dict[str, Any]:
    """Counts of an exported file: photos, referring sets, expressions, per level, single vs multi."""
    boxes_per_ref = Counter(a["image_id"] for a in data["annotations"])
    photos = {img["file_name"] for img in data["images"]}
    levels: Counter[int] = Counter()
    words = []
    single = multi = 0
    n_expr = 0
    for img in data["images"]:
        exprs = img.get("expressions", [])
        n_expr += len(exprs)
        words += [len(e.split()) for e in exprs]
        for level in img.get("levels") or []:
            levels[int(level)] += 1
        if boxes_per_ref[img["id"]] > 1:
            multi += len(exprs)
        else:
            single += len(exprs)
    return {
        "photos": len(photos),
        "referring_sets": len(data["images"]),
        "boxes": len(data["annotations"]),
        "expressions": n_expr,
        "expressions_single_target": single,
        "expressions_multi_target": multi,
        "expressions_per_level": {str(k): levels[k] for k in sorted(levels)},
        "mean_words_per_expression": (sum(words) / len(words)) if words else 0.0,
    }
