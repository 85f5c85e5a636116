"""The SK-VG release: ``annotations.json`` (``{"train", "val", "test"}``) and ``images/``.

Record::

    {"image_name": "3853.jpg", "knowledge": "<scene passage>", "ref_exp": "<query>",
     "bbox": {"x", "y", "width", "height"},   # centre x / y, pixels
     "level": "easy" | "medium" | "hard"}     # test only

Train and val records have exactly the first four keys; test records may carry more, ``level`` being
the difficulty (normalised with ``strip().lower()``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skvg.boxes import center_to_xywh_tl, release_to_xyxy

__all__ = [
    "SPLITS",
    "REQUIRED_KEYS",
    "Problem",
    "load_annotations",
    "validate_annotations",
    "to_transvg_records",
    "to_coco",
    "split_statistics",
    "query_knowledge_text",
]

SPLITS = ("train", "val", "test")
REQUIRED_KEYS = ("image_name", "knowledge", "ref_exp", "bbox")
BOX_KEYS = ("x", "y", "width", "height")


@dataclass(frozen=True)
class Problem:
    split: str
    index: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.split}[{self.index}]: {self.field}: {self.message}"


def load_annotations(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Read ``annotations.json``; unknown top-level keys and malformed records raise ``ValueError``."""
    path = Path(path)
    if path.is_dir():
        path = path / "annotations.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no SK-VG annotations at {path}; download SK-VG.v1 (see the README) and pass its folder"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold an object with train/val/test lists")
    unknown = sorted(set(data) - set(SPLITS))
    if unknown:
        raise ValueError(
            f"{path}: unknown top-level keys {unknown}; expected a subset of {list(SPLITS)}"
        )
    problems = [p for p in validate_annotations(data) if p.field in (*REQUIRED_KEYS, "record")]
    if problems:
        raise ValueError(f"{path}: {len(problems)} malformed records, first: {problems[0]}")
    return {split: list(data.get(split, [])) for split in SPLITS if split in data}


def validate_annotations(
    data: Mapping[str, Any],
    *,
    images_dir: str | Path | None = None,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    convention: str = "center",
    strict: bool = False,
) -> list[Problem]:
    """Every problem with its split, index and field (empty: valid).

    Checks required keys and types, positive width/height, empty texts, duplicate (image, query,
    knowledge) triples, the image file (with ``images_dir``), the box inside the image within 1 px
    (with ``image_sizes``), and with ``strict`` extra keys in train/val records.
    """
    problems: list[Problem] = []
    for split in data:
        if split not in SPLITS:
            problems.append(Problem(split, -1, "split", f"unknown split; expected {list(SPLITS)}"))
            continue
        records = data[split]
        if not isinstance(records, list):
            problems.append(Problem(split, -1, "split", "must be a list of records"))
            continue
        seen: dict[tuple[str, str, str], int] = {}
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                problems.append(Problem(split, i, "record", "not an object"))
                continue
            for key in REQUIRED_KEYS:
                if key not in rec:
                    problems.append(Problem(split, i, key, "missing"))
            for key in ("image_name", "knowledge", "ref_exp"):
                if key in rec and (not isinstance(rec[key], str) or not rec[key].strip()):
                    problems.append(Problem(split, i, key, "must be a non-empty string"))
            box = rec.get("bbox")
            if "bbox" in rec:
                if not isinstance(box, dict) or any(
                    not isinstance(box.get(k), (int, float)) for k in BOX_KEYS
                ):
                    problems.append(
                        Problem(split, i, "bbox", f"must have numeric {list(BOX_KEYS)}")
                    )
                    box = None
                elif box["width"] <= 0 or box["height"] <= 0:
                    problems.append(Problem(split, i, "bbox", "width and height must be > 0"))
            if strict and split in ("train", "val"):
                extra = sorted(set(rec) - set(REQUIRED_KEYS))
                if extra:
                    problems.append(Problem(split, i, "keys", f"unexpected keys {extra}"))
            name = rec.get("image_name")
            if isinstance(name, str):
                if images_dir is not None and not (Path(images_dir) / name).is_file():
                    problems.append(
                        Problem(split, i, "image_name", f"no file {name} in {images_dir}")
                    )
                if image_sizes is not None and box is not None and name in image_sizes:
                    w, h = image_sizes[name]
                    x1, y1, x2, y2 = release_to_xyxy(box, convention)
                    if x1 < -1 or y1 < -1 or x2 > w + 1 or y2 > h + 1:
                        problems.append(Problem(split, i, "bbox", f"leaves the {w}x{h} image"))
                triple = (name, str(rec.get("ref_exp")), str(rec.get("knowledge")))
                if triple in seen:
                    problems.append(
                        Problem(split, i, "record", f"duplicate of {split}[{seen[triple]}]")
                    )
                else:
                    seen[triple] = i
    return problems


def query_knowledge_text(record: Mapping[str, Any]) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """``"<query>. <knowledge>"`` and the character spans of both parts (the one-stage baseline's order)."""
    query, knowledge = str(record["ref_exp"]), str(record["knowledge"])
    text = f"{query}. {knowledge}"
    return text, (0, len(query)), (len(query) + 2, len(text))


def to_transvg_records(records: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """``[image_name, None, [tl_x, tl_y, w, h], "<query>. <knowledge>", None]`` with an
    int-truncated top-left, as the authors' one-stage preparation writes them."""
    return [
        [
            rec["image_name"],
            None,
            center_to_xywh_tl(rec["bbox"]),
            query_knowledge_text(rec)[0],
            None,
        ]
        for rec in records
    ]


def to_coco(
    records: Sequence[Mapping[str, Any]], image_sizes: Mapping[str, tuple[int, int]] | None = None
) -> dict[str, Any]:
    """COCO detection layout (one category, "target"), one image per distinct image name."""
    images: dict[str, int] = {}
    coco_images, anns = [], []
    for rec in records:
        name = str(rec["image_name"])
        if name not in images:
            images[name] = len(images)
            entry: dict[str, Any] = {"id": images[name], "file_name": name}
            if image_sizes and name in image_sizes:
                entry["width"], entry["height"] = image_sizes[name]
            coco_images.append(entry)
        x1, y1, x2, y2 = release_to_xyxy(rec["bbox"])
        anns.append(
            {
                "id": len(anns),
                "image_id": images[name],
                "category_id": 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
        )
    return {"images": coco_images, "annotations": anns, "categories": [{"id": 1, "name": "target"}]}


def split_statistics(data: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Counts, distinct images, level histogram and mean word counts per split."""
    out: dict[str, Any] = {}
    for split, records in data.items():
        levels = Counter(
            str(r["level"]).strip().lower() for r in records if isinstance(r.get("level"), str)
        )
        q_words = [len(str(r["ref_exp"]).split()) for r in records]
        k_words = [len(str(r["knowledge"]).split()) for r in records]
        out[split] = {
            "records": len(records),
            "images": len({r["image_name"] for r in records}),
            "levels": dict(sorted(levels.items())),
            "mean_query_words": sum(q_words) / len(q_words) if q_words else 0.0,
            "mean_knowledge_words": sum(k_words) / len(k_words) if k_words else 0.0,
            "max_knowledge_words": max(k_words) if k_words else 0,
        }
    return out
