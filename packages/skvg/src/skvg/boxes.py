"""Box conventions of SK-VG.

The release stores ``{"x", "y", "width", "height"}`` in original-image pixels with (x, y) the box
**centre** (the authors' conversion to TransVG computes the top-left as ``x - width / 2``). Models
predict (cx, cy, w, h) normalised by the padded square canvas (TransVG's letterbox).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "CONVENTIONS",
    "center_to_xyxy",
    "xyxy_to_center",
    "center_to_xywh_tl",
    "release_to_xyxy",
    "xyxy_to_release",
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "convention_diagnostic",
]

CONVENTIONS = ("center", "topleft")


def center_to_xyxy(box: Mapping[str, float]) -> list[float]:
    """Release box (centre x, y, width, height) -> [x1, y1, x2, y2]."""
    x, y, w, h = float(box["x"]), float(box["y"]), float(box["width"]), float(box["height"])
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2]


def xyxy_to_center(xyxy: Sequence[float]) -> dict[str, float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "width": x2 - x1, "height": y2 - y1}


def center_to_xywh_tl(box: Mapping[str, float], *, truncate: bool = True) -> list[float]:
    """Release box -> TransVG's [top-left x, top-left y, w, h] (ints when ``truncate``, as the authors'
    preparation script does)."""
    x, y, w, h = float(box["x"]), float(box["y"]), float(box["width"]), float(box["height"])
    out = [x - w / 2, y - h / 2, w, h]
    return [float(int(out[0])), float(int(out[1])), w, h] if truncate else out


def release_to_xyxy(box: Mapping[str, float], convention: str = "center") -> list[float]:
    """Release box under ``convention`` ("center": (x, y) is the centre; "topleft": the corner)."""
    if convention == "center":
        return center_to_xyxy(box)
    if convention == "topleft":
        x, y, w, h = float(box["x"]), float(box["y"]), float(box["width"]), float(box["height"])
        return [x, y, x + w, y + h]
    raise ValueError(f"bbox convention must be one of {CONVENTIONS}, got {convention!r}")


def xyxy_to_release(xyxy: Sequence[float], convention: str = "center") -> dict[str, float]:
    if convention == "center":
        return xyxy_to_center(xyxy)
    if convention == "topleft":
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        return {"x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1}
    raise ValueError(f"bbox convention must be one of {CONVENTIONS}, got {convention!r}")


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) (cx, cy, w, h) -> (..., 4) (x1, y1, x2, y2)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def convention_diagnostic(
    records: Iterable[Mapping[str, Any]],
    sizes: Mapping[str, tuple[int, int]],
    tolerance: float = 1.0,
) -> dict[str, float]:
    """Fraction of boxes inside their image (within ``tolerance`` px) under each convention.

    ``sizes`` maps image name -> (width, height). Records whose image size is unknown are skipped.
    """
    inside = dict.fromkeys(CONVENTIONS, 0)
    total = 0
    for rec in records:
        size = sizes.get(str(rec["image_name"]))
        if size is None:
            continue
        total += 1
        width, height = size
        for conv in CONVENTIONS:
            x1, y1, x2, y2 = release_to_xyxy(rec["bbox"], conv)
            if (
                x1 >= -tolerance
                and y1 >= -tolerance
                and x2 <= width + tolerance
                and y2 <= height + tolerance
            ):
                inside[conv] += 1
    return {conv: (inside[conv] / total if total else float("nan")) for conv in CONVENTIONS}
