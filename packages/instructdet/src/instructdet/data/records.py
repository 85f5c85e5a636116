"""The working record (one JSON line per image) and its file I/O.

A record::

    {"filename": str, "height": int, "width": int, "bboxes": [obj, ...],
     "hints"?: [str], "caption"?: str, "image_id"?: int | str,
     "clusters_intsc"?: [...], "clusters"?: [...], "clusters_conj"?: [...]}

    obj = {"bbox_id": int, "bbox": [[x, y, w, h], ...], "expressions": [str],
           "expressions_llm"?, "expressions_vlm"?, "<key>_filtered"?, "<key>_levels"?,
           "expressions_single"?, "bboxes_init_anno"?}

``bbox`` is always a list of COCO boxes (x, y, w, h in pixels): one referring set may cover several
boxes. ``bbox_id`` is the object's index in ``bboxes``; clusters index into it. Unknown keys pass
through every stage untouched.

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so a crash
never leaves a truncated file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "Record",
    "read_jsonl",
    "iter_jsonl",
    "write_jsonl",
    "write_json",
    "record_key",
    "normalize_record",
    "SINGLE_KEYS",
]

Record = dict[str, Any]

#: Per-object expression lists, in export order: original, visual-prompt VLM, LLM.
SINGLE_KEYS: tuple[str, ...] = ("expressions", "expressions_vlm", "expressions_llm")


def iter_jsonl(path: str | Path) -> Iterator[Record]:
    """Records of a JSONL file; a malformed line raises ``ValueError`` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSONL file at {path}")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}"
                )
            yield obj


def read_jsonl(path: str | Path) -> list[Record]:
    return list(iter_jsonl(path))


def _atomic_write_text(path: Path, chunks: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, records: Iterable[Record]) -> None:
    """Write one JSON object per line, atomically."""
    _atomic_write_text(
        Path(path), (json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in records)
    )


def write_json(path: str | Path, obj: Any) -> None:
    """Write a JSON document atomically."""
    _atomic_write_text(Path(path), [json.dumps(obj, ensure_ascii=False, indent=1)])


def record_key(record: Record) -> str:
    """A stable identity of a record, used to derive its random stream."""
    if "image_id" in record:
        return f"{record.get('filename', '')}#{record['image_id']}"
    return str(record.get("filename", ""))


def normalize_record(record: Record) -> Record:
    """Fill the fields every stage relies on: ``bbox_id``, list-of-boxes ``bbox``, ``hints``."""
    if "bboxes" not in record or not isinstance(record["bboxes"], list):
        raise ValueError(f"record {record_key(record)!r} has no 'bboxes' list")
    for index, obj in enumerate(record["bboxes"]):
        obj["bbox_id"] = index
        boxes = obj.get("bbox")
        if boxes and isinstance(boxes[0], (int, float)):
            obj["bbox"] = [list(boxes)]
        obj.setdefault("expressions", [])
    if "hints" not in record:
        record["hints"] = [obj["expressions"][0] for obj in record["bboxes"] if obj["expressions"]]
    return record
