"""Evaluation of referring-object-detection (ROD) predictions on an InDET-layout file.

Ground truth: any file in the export layout; each (referring set, expression index) is a sample, with
level ``levels[expr_idx]`` when the file has levels. Predictions: a JSON list of
``{"image_id": ref_id, "expr_idx": int, "bbox": [x, y, w, h], "score": float}``; without ``expr_idx``
(in every prediction) a referring set's boxes count for all of its expressions.

Metrics (IoU on continuous coordinates, no +1):

- ``acc@0.5``: the standard REC accuracy on single-box samples: the top-scoring box hits when its
  IoU with the ground truth is at least 0.5; a sample without prediction is a miss.
- ``AP``, ``AP50``, ``AP75``: COCO box AP through pycocotools with every sample as its own image
  (category 1, maxDets 100): the main metric for multi-target sets.
- ``precision``, ``recall``, ``f1``: set matching after a score threshold (default 0.5), greedy
  one-to-one by score at IoU >= 0.5, summed over samples.

Each is also reported per level (0-5) and for single- vs multi-target samples.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["box_iou", "evaluate_predictions", "load_predictions", "Sample"]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Sample:
    ref_id: Any
    expr_idx: int | None
    boxes: list[list[float]]
    level: int | None
    predictions: list[tuple[list[float], float]]

    @property
    def multi(self) -> bool:
        return len(self.boxes) > 1


def load_predictions(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no prediction file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a JSON list of predictions, got {type(data).__name__}")
    return data


def _check_prediction(n: int, pred: Any) -> None:
    if not isinstance(pred, dict):
        raise ValueError(f"prediction {n} is not an object")
    for key in ("image_id", "bbox", "score"):
        if key not in pred:
            raise ValueError(
                f"prediction {n} lacks {key!r} (need image_id, bbox, score[, expr_idx])"
            )
    box = pred["bbox"]
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise ValueError(f"prediction {n}: bbox must be [x, y, w, h], got {box!r}")


def _samples(gt: dict[str, Any], preds: list[dict[str, Any]]) -> list[Sample]:
    for n, pred in enumerate(preds):
        _check_prediction(n, pred)
    with_idx = sum("expr_idx" in p for p in preds)
    if 0 < with_idx < len(preds):
        raise ValueError("either every prediction has 'expr_idx' or none has (per-set evaluation)")
    per_expression = with_idx > 0 or not preds
    boxes: dict[Any, list[list[float]]] = {}
    for ann in gt["annotations"]:
        boxes.setdefault(ann["image_id"], []).append([float(v) for v in ann["bbox"]])
    by_key: dict[tuple[Any, int | None], list[tuple[list[float], float]]] = {}
    for pred in preds:
        key = (pred["image_id"], int(pred["expr_idx"]) if per_expression else None)
        by_key.setdefault(key, []).append(([float(v) for v in pred["bbox"]], float(pred["score"])))
    known = {img["id"] for img in gt["images"]}
    unknown = sorted({str(k[0]) for k in by_key if k[0] not in known})
    if unknown:
        raise ValueError(f"predictions name image_id(s) not in the ground truth: {unknown[:5]}")
    samples = []
    for img in gt["images"]:
        levels = img.get("levels")
        for idx in range(len(img.get("expressions") or [])):
            key = (img["id"], idx if per_expression else None)
            level = int(levels[idx]) if levels is not None and levels[idx] >= 0 else None
            samples.append(
                Sample(img["id"], idx, boxes.get(img["id"], []), level, by_key.get(key, []))
            )
    return samples


def _accuracy(samples: Sequence[Sample]) -> float | None:
    single = [s for s in samples if len(s.boxes) == 1]
    if not single:
        return None
    hits = 0
    for s in single:
        if s.predictions:
            top = max(s.predictions, key=lambda p: p[1])[0]
            hits += box_iou(top, s.boxes[0]) >= 0.5
    return hits / len(single)


def _set_prf(samples: Sequence[Sample], threshold: float) -> dict[str, float]:
    tp = n_pred = n_gt = 0
    for s in samples:
        preds = sorted((p for p in s.predictions if p[1] >= threshold), key=lambda p: -p[1])
        n_pred += len(preds)
        n_gt += len(s.boxes)
        free = list(range(len(s.boxes)))
        for box, _ in preds:
            if not free:
                break
            ious = [box_iou(box, s.boxes[j]) for j in free]
            best = int(np.argmax(ious))
            if ious[best] >= 0.5:
                tp += 1
                free.pop(best)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gt if n_gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _coco_ap(samples: Sequence[Sample]) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, s in enumerate(samples):
        images.append({"id": i})
        for box in s.boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
        for box, score in s.predictions:
            dets.append({"image_id": i, "category_id": 1, "bbox": box, "score": score})
    if not anns:
        return {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
    if not dets:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt: Any = COCO()
        gt.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": 1, "name": "object"}],
        }
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, 100]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [max(0.0, float(v)) for v in ev.stats[:3]]
    return {"AP": stats[0], "AP50": stats[1], "AP75": stats[2]}


def _metrics(samples: Sequence[Sample], threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": len(samples), "acc@0.5": _accuracy(samples)}
    out.update(_coco_ap(samples))
    out.update(_set_prf(samples, threshold))
    return out


def evaluate_predictions(
    gt: dict[str, Any] | str | Path,
    predictions: list[dict[str, Any]] | str | Path,
    *,
    score_threshold: float = 0.5,
) -> dict[str, Any]:
    """All metrics overall, per level and per single / multi target."""
    if isinstance(gt, dict):
        truth = gt
    else:
        path = Path(gt)
        if not path.is_file():
            raise FileNotFoundError(f"no ground-truth file at {path}")
        truth = json.loads(path.read_text(encoding="utf-8"))
    preds = predictions if isinstance(predictions, list) else load_predictions(predictions)
    samples = _samples(truth, preds)
    result: dict[str, Any] = {"overall": _metrics(samples, score_threshold)}
    result["single_target"] = _metrics([s for s in samples if not s.multi], score_threshold)
    result["multi_target"] = _metrics([s for s in samples if s.multi], score_threshold)
    levels = sorted({s.level for s in samples if s.level is not None})
    result["per_level"] = {
        str(level): _metrics([s for s in samples if s.level == level], score_threshold)
        for level in levels
    }
    return result
