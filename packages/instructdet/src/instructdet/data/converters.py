"""Converters from public referring / detection formats to working records.

- RefCOCO / RefCOCO+ / RefCOCOg raw: ``refs(unc).p`` (RefCOCOg: ``refs(umd).p``), a pickled list of
  ``{ref_id, ann_id, image_id, split, category_id, file_name, sent_ids, sentences}``, plus COCO
  ``instances.json``. Image files are ``COCO_train2014_%012d.jpg``. The pickle is read with an
  unpickler that refuses every class, so only plain containers load.
- SeqTR ``instances.json``: ``{split: [{image_id, height, width, bbox, mask, expressions}]}`` with COCO
  (x, y, w, h) boxes.
- UNINEXT ``instances_<split>.json`` (the export layout): referring sets grouped by ``file_name``.
- Flickr30K Entities: ``Sentences/<id>.txt`` (``[/EN#<pid>/<type> words]``) and
  ``Annotations/<id>.xml`` (1-based corners; ``nobndbox`` / ``scene`` entities skipped).
- COCO / Objects365 detection: one object per annotation, expressions ``[category name]``.

In every case referring sets of one photo with the same set of boxes are merged (expressions
concatenated) and ``hints`` holds the first expression of each object.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from instructdet.data.records import Record, normalize_record

__all__ = [
    "from_refcoco_raw",
    "from_seqtr",
    "from_uninext",
    "from_flickr30k",
    "from_detection",
    "load_refs_pickle",
    "coco_train2014_name",
]


def coco_train2014_name(image_id: int) -> str:
    return f"COCO_train2014_{int(image_id):012d}.jpg"


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refuses to load {module}.{name}: a refs pickle holds only lists, dicts and strings"
        )


def load_refs_pickle(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no refs pickle at {path} (e.g. refcoco/refs(unc).p)")
    with path.open("rb") as fh:
        try:
            refs = _PlainUnpickler(fh, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError) as err:
            raise ValueError(f"{path} is not a refs pickle: {err}") from None
    if not isinstance(refs, list):
        raise ValueError(f"{path} should hold a list of refs, got {type(refs).__name__}")
    return refs


def _read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSON file at {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}") from None


def _require(obj: dict[str, Any], keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{where} lacks {missing}")


def _group(entries: Iterable[dict[str, Any]]) -> list[Record]:
    """entries: {filename, height, width, boxes, expressions, extra...} -> records."""
    photos: dict[str, Record] = {}
    index: dict[tuple[str, str], dict[str, Any]] = {}
    for e in entries:
        record = photos.setdefault(
            e["filename"],
            {
                "filename": e["filename"],
                "height": int(e["height"]),
                "width": int(e["width"]),
                "bboxes": [],
            },
        )
        for key in ("image_id", "source"):
            if key in e:
                record.setdefault(key, e[key])
        box_key = json.dumps([[round(float(v), 2) for v in b] for b in e["boxes"]])
        obj = index.get((e["filename"], box_key))
        if obj is None:
            obj = {"bbox": [[float(v) for v in b] for b in e["boxes"]], "expressions": []}
            for key in ("category_name", "bboxes_init_anno"):
                if key in e:
                    obj[key] = e[key]
            record["bboxes"].append(obj)
            index[(e["filename"], box_key)] = obj
        for expr in e["expressions"]:
            if expr not in obj["expressions"]:
                obj["expressions"].append(expr)
    return [normalize_record(r) for r in photos.values()]


def from_refcoco_raw(
    refs_path: str | Path, instances_path: str | Path, *, split: str | None = None
) -> list[Record]:
    """RefCOCO/+/g raw files -> records (one photo per record), optionally one split only."""
    refs = load_refs_pickle(refs_path)
    instances = _read_json(instances_path)
    _require(instances, ["images", "annotations"], str(instances_path))
    images = {img["id"]: img for img in instances["images"]}
    anns = {ann["id"]: ann for ann in instances["annotations"]}
    cats = {c["id"]: c["name"] for c in instances.get("categories", [])}
    entries = []
    for n, ref in enumerate(refs):
        _require(ref, ["ann_id", "image_id", "sentences"], f"ref {n}")
        if split is not None and ref.get("split") != split:
            continue
        ann = anns.get(ref["ann_id"])
        image = images.get(ref["image_id"])
        if ann is None or image is None:
            raise ValueError(
                f"ref {ref.get('ref_id', n)} points to ann {ref['ann_id']} / image {ref['image_id']} "
                f"missing from {instances_path}"
            )
        sentences = [str(s.get("sent") or s.get("raw", "")).strip() for s in ref["sentences"]]
        entries.append(
            {
                "filename": coco_train2014_name(ref["image_id"]),
                "height": image["height"],
                "width": image["width"],
                "image_id": ref["image_id"],
                "source": "coco",
                "boxes": [ann["bbox"]],
                "expressions": [s for s in sentences if s],
                "category_name": cats.get(ref.get("category_id", ann.get("category_id")), "object"),
            }
        )
    return _group(entries)


def from_seqtr(path: str | Path, split: str) -> list[Record]:
    """SeqTR ``instances.json`` split -> records."""
    data = _read_json(path)
    if split not in data:
        raise ValueError(f"{path} has no split {split!r}; it has {sorted(data)}")
    entries = []
    for n, item in enumerate(data[split]):
        _require(item, ["image_id", "height", "width", "bbox", "expressions"], f"{split}[{n}]")
        entries.append(
            {
                "filename": coco_train2014_name(item["image_id"]),
                "height": item["height"],
                "width": item["width"],
                "image_id": item["image_id"],
                "source": "coco",
                "boxes": [item["bbox"]],
                "expressions": [str(e) for e in item["expressions"]],
            }
        )
    return _group(entries)


def from_uninext(path: str | Path | dict[str, Any]) -> list[Record]:
    """UNINEXT / InDET COCO JSON -> records (referring sets with the same boxes merged)."""
    data = path if isinstance(path, dict) else _read_json(path)
    _require(data, ["images", "annotations"], "UNINEXT file")
    boxes: dict[Any, list[list[float]]] = {}
    for ann in data["annotations"]:
        boxes.setdefault(ann["image_id"], []).append(ann["bbox"])
    entries = []
    for img in data["images"]:
        _require(img, ["file_name", "height", "width", "id"], f"image {img.get('id')}")
        if img["id"] not in boxes:
            continue
        entries.append(
            {
                "filename": img["file_name"],
                "height": img["height"],
                "width": img["width"],
                "boxes": boxes[img["id"]],
                "expressions": list(img.get("expressions") or []),
            }
        )
    return _group(entries)


_ENTITY = re.compile(r"\[/EN#(\d+)/(\S+) ([^\]]+)\]")
_ARTICLES = {"a", "an", "the", "his", "her", "its"}


def _strip_determiners(phrase: str) -> str:
    return " ".join(w for w in phrase.split() if w.lower() not in _ARTICLES)


def from_flickr30k(root: str | Path, ids: Sequence[str]) -> list[Record]:
    """Flickr30K Entities (``root/Sentences``, ``root/Annotations``) for the given image ids."""
    root = Path(root)
    records = []
    for image_id in ids:
        sent_path = root / "Sentences" / f"{image_id}.txt"
        ann_path = root / "Annotations" / f"{image_id}.xml"
        for p in (sent_path, ann_path):
            if not p.is_file():
                raise FileNotFoundError(f"Flickr30K Entities file {p} not found")
        lines = [
            line.strip()
            for line in sent_path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        phrases: dict[str, list[str]] = {}
        captions = []
        for line in lines:
            for pid, kind, words in _ENTITY.findall(line):
                if kind in ("notvisual", "scene"):
                    continue
                phrase = _strip_determiners(words)
                if phrase and phrase not in phrases.setdefault(pid, []):
                    phrases[pid].append(phrase)
            captions.append(_ENTITY.sub(lambda m: m.group(3), line))
        tree = ET.parse(ann_path).getroot()
        size = tree.find("size")
        if size is None:
            raise ValueError(f"{ann_path} has no <size>")
        width = int(size.findtext("width", "0"))
        height = int(size.findtext("height", "0"))
        boxes: dict[str, list[list[float]]] = {}
        for obj in tree.findall("object"):
            box = obj.find("bndbox")
            if box is None:
                continue  # nobndbox / scene entities
            x1, y1, x2, y2 = (
                float(box.findtext(k, "0")) - 1 for k in ("xmin", "ymin", "xmax", "ymax")
            )
            for name in obj.findall("name"):
                boxes.setdefault(str(name.text), []).append([x1, y1, x2 - x1, y2 - y1])
        entries = [
            {
                "filename": f"{image_id}.jpg",
                "height": height,
                "width": width,
                "source": "flickr30k",
                "boxes": boxes[pid],
                "expressions": exprs,
            }
            for pid, exprs in phrases.items()
            if pid in boxes
        ]
        for record in _group(entries):
            record["caption"] = "\n".join(captions)
            records.append(record)
    return records


def from_detection(
    path: str | Path | dict[str, Any],
    *,
    max_images: int | None = None,
    seed: int = 0,
    source: str = "coco",
) -> list[Record]:
    """COCO / Objects365 detection JSON -> records, one object per (non-crowd) annotation.

    ``max_images`` samples that many photos at random (InDET sampled 6,000 Objects365 v2 images).
    """
    data = path if isinstance(path, dict) else _read_json(path)
    _require(data, ["images", "annotations", "categories"], "detection file")
    cats = {}
    for cat in data["categories"]:
        name = cat["name"]
        cats[cat["id"]] = name if isinstance(name, str) else " ".join(map(str, name))
    images = {img["id"]: img for img in data["images"]}
    chosen = sorted(images)
    if max_images is not None and max_images < len(chosen):
        chosen = sorted(random.Random(seed).sample(chosen, max_images))
    keep = set(chosen)
    entries = []
    for ann in data["annotations"]:
        if ann["image_id"] not in keep or ann.get("iscrowd", 0):
            continue
        img = images[ann["image_id"]]
        name = cats.get(ann["category_id"], "object")
        entries.append(
            {
                "filename": img["file_name"],
                "height": img["height"],
                "width": img["width"],
                "image_id": img["id"],
                "source": source,
                "boxes": [ann["bbox"]],
                "expressions": [name],
                "category_name": name,
                "bboxes_init_anno": [ann],
            }
        )
    return _group(entries)
