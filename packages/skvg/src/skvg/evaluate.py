"""Acc@0.5 overall and per difficulty level.

``iou`` uses continuous areas (no +1 pixel convention) with 1e-16 in the denominator; a prediction is
clamped to its image before scoring (TransVG clamps normalised boxes to [0, 1]); a sample is correct
when IoU >= 0.5 (greater or equal).

Prediction file: a JSON list aligned with the split order, ``{"index": i, "bbox": {"x", "y",
"width", "height"}}`` in the release's centre convention. A missing index counts as wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skvg.boxes import release_to_xyxy

__all__ = ["iou", "acc_at", "evaluate", "load_predictions", "LEVELS"]

LEVELS = ("easy", "medium", "hard")


def iou(pred: Sequence[float], gt: Sequence[float]) -> float:
    """IoU of two [x1, y1, x2, y2] boxes."""
    px1, py1, px2, py2 = (float(v) for v in pred)
    gx1, gy1, gx2, gy2 = (float(v) for v in gt)
    iw = max(0.0, min(px2, gx2) - max(px1, gx1))
    ih = max(0.0, min(py2, gy2) - max(py1, gy1))
    inter = iw * ih
    union = (
        max(0.0, px2 - px1) * max(0.0, py2 - py1)
        + max(0.0, gx2 - gx1) * max(0.0, gy2 - gy1)
        - inter
    )
    return inter / (union + 1e-16)


def acc_at(ious: Sequence[float], threshold: float = 0.5) -> float:
    """Fraction of IoUs >= ``threshold``."""
    return sum(v >= threshold for v in ious) / len(ious) if ious else float("nan")


def _clamp(box: list[float], size: tuple[int, int] | None) -> list[float]:
    if size is None:
        return box
    w, h = size
    return [
        min(max(box[0], 0.0), w),
        min(max(box[1], 0.0), h),
        min(max(box[2], 0.0), w),
        min(max(box[3], 0.0), h),
    ]


def load_predictions(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no prediction file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a JSON list of {{'index', 'bbox'}} objects")
    return data


def evaluate(
    predictions: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    *,
    convention: str = "center",
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """``{"all", "easy", "medium", "hard", "n_all", "n_easy", ...}`` (levels lower-cased; samples
    without a level count only in "all")."""
    by_index: dict[int, Mapping[str, Any]] = {}
    for n, pred in enumerate(predictions):
        if not isinstance(pred, Mapping) or "index" not in pred or "bbox" not in pred:
            raise ValueError(
                f"prediction {n} must be {{'index': int, 'bbox': {{x, y, width, height}}}}"
            )
        index = int(pred["index"])
        if not 0 <= index < len(records):
            raise ValueError(f"prediction {n} has index {index}, outside 0..{len(records) - 1}")
        by_index[index] = pred
    per_level: dict[str, list[float]] = {"all": []}
    for i, rec in enumerate(records):
        gt = release_to_xyxy(rec["bbox"], convention)
        pred = by_index.get(i)
        if pred is None:
            value = 0.0
        else:
            size = image_sizes.get(str(rec["image_name"])) if image_sizes else None
            value = iou(_clamp(release_to_xyxy(pred["bbox"], convention), size), gt)
        per_level["all"].append(value)
        level = rec.get("level")
        if isinstance(level, str) and level.strip():
            per_level.setdefault(level.strip().lower(), []).append(value)
    out: dict[str, Any] = {}
    for name in ("all", *LEVELS, *sorted(set(per_level) - {"all", *LEVELS})):
        values = per_level.get(name, [])
        out[name] = acc_at(values, threshold) if values else None
        out[f"n_{name}"] = len(values)
    return out
