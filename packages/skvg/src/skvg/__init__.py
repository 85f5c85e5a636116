"""SK-VG (CVPR 2023): scene-knowledge-guided visual grounding - dataset tools, the evaluator, and the
KeViLI (one-stage) and LeViLM (two-stage) models. Names load on first use (fast ``import skvg``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from papers_shared.lazy import lazy_exports
from skvg._version import __version__

_EXPORTS = {
    "KeViLIConfig": "skvg.config",
    "LeViLMConfig": "skvg.config",
    "TrainConfig": "skvg.config",
    "KeViLI": "skvg.models.kevili",
    "TransVG": "skvg.models.kevili",
    "LeViLM": "skvg.models.levilm",
    "TextEncoder": "skvg.models.text",
    "grounding_loss": "skvg.losses",
    "matching_loss": "skvg.losses",
    "evaluate": "skvg.evaluate",
    "iou": "skvg.evaluate",
    "load_annotations": "skvg.data.annotations",
    "validate_annotations": "skvg.data.annotations",
    "to_transvg_records": "skvg.data.annotations",
    "to_coco": "skvg.data.annotations",
    "split_statistics": "skvg.data.annotations",
    "write_synthetic_dataset": "skvg.data.synthetic",
    "GroundingDataset": "skvg.data.datasets",
    "center_to_xyxy": "skvg.boxes",
    "center_to_xywh_tl": "skvg.boxes",
}

__all__ = [
    "__version__",
    "KeViLIConfig",
    "LeViLMConfig",
    "TrainConfig",
    "KeViLI",
    "TransVG",
    "LeViLM",
    "TextEncoder",
    "grounding_loss",
    "matching_loss",
    "evaluate",
    "iou",
    "load_annotations",
    "validate_annotations",
    "to_transvg_records",
    "to_coco",
    "split_statistics",
    "write_synthetic_dataset",
    "GroundingDataset",
    "center_to_xyxy",
    "center_to_xywh_tl",
]


if TYPE_CHECKING:
    from skvg.boxes import center_to_xywh_tl, center_to_xyxy
    from skvg.config import KeViLIConfig, LeViLMConfig, TrainConfig
    from skvg.data.annotations import (
        load_annotations,
        split_statistics,
        to_coco,
        to_transvg_records,
        validate_annotations,
    )
    from skvg.data.datasets import GroundingDataset
    from skvg.data.synthetic import write_synthetic_dataset
    from skvg.evaluate import evaluate, iou
    from skvg.losses import grounding_loss, matching_loss
    from skvg.models.kevili import KeViLI, TransVG
    from skvg.models.levilm import LeViLM
    from skvg.models.text import TextEncoder


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
