"""InstructDET (ICLR 2024): the InDET instruction-generation pipeline, dataset tooling and a
referring-object-detection evaluator.

Names are imported on first use, so ``import instructdet`` (and the command line's ``--help``) stays
fast; torch and open_clip load only when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from instructdet._version import __version__
from papers_shared.lazy import lazy_exports

_EXPORTS = {
    "STAGES": "instructdet.config",
    "GenerationConfig": "instructdet.config",
    "PipelineConfig": "instructdet.config",
    "Pipeline": "instructdet.pipeline.runner",
    "merge_shards": "instructdet.pipeline.runner",
    "create_backend": "instructdet.models.backends",
    "ClipScorer": "instructdet.models.clip_filter",
    "create_clip_scorer": "instructdet.models.clip_filter",
    "filter_phrases": "instructdet.models.clip_filter",
    "BertPoolerEmbedder": "instructdet.models.embedder",
    "HashingEmbedder": "instructdet.models.embedder",
    "from_refcoco_raw": "instructdet.data.converters",
    "from_seqtr": "instructdet.data.converters",
    "from_uninext": "instructdet.data.converters",
    "from_flickr30k": "instructdet.data.converters",
    "from_detection": "instructdet.data.converters",
    "export_indet": "instructdet.data.export",
    "merge_exports": "instructdet.data.export",
    "validate_export": "instructdet.data.export",
    "validate_records": "instructdet.data.export",
    "dataset_stats": "instructdet.data.export",
    "read_jsonl": "instructdet.data.records",
    "write_jsonl": "instructdet.data.records",
    "sample_records": "instructdet.data.sample",
    "evaluate_predictions": "instructdet.evaluate",
}

__all__ = [
    "__version__",
    "STAGES",
    "GenerationConfig",
    "PipelineConfig",
    "Pipeline",
    "merge_shards",
    "create_backend",
    "ClipScorer",
    "create_clip_scorer",
    "filter_phrases",
    "BertPoolerEmbedder",
    "HashingEmbedder",
    "from_refcoco_raw",
    "from_seqtr",
    "from_uninext",
    "from_flickr30k",
    "from_detection",
    "export_indet",
    "merge_exports",
    "validate_export",
    "validate_records",
    "dataset_stats",
    "read_jsonl",
    "write_jsonl",
    "sample_records",
    "evaluate_predictions",
]

if TYPE_CHECKING:
    from instructdet.config import STAGES, GenerationConfig, PipelineConfig
    from instructdet.data.converters import (
        from_detection,
        from_flickr30k,
        from_refcoco_raw,
        from_seqtr,
        from_uninext,
    )
    from instructdet.data.export import (
        dataset_stats,
        export_indet,
        merge_exports,
        validate_export,
        validate_records,
    )
    from instructdet.data.records import read_jsonl, write_jsonl
    from instructdet.data.sample import sample_records
    from instructdet.evaluate import evaluate_predictions
    from instructdet.models.backends import create_backend
    from instructdet.models.clip_filter import ClipScorer, create_clip_scorer, filter_phrases
    from instructdet.models.embedder import BertPoolerEmbedder, HashingEmbedder
    from instructdet.pipeline.runner import Pipeline, merge_shards


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
