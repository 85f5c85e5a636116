"""Shared utilities for the papers monorepo (only what two or more method packages need).

Names are imported on first use, so ``import papers_shared`` (and the ``papers`` command's
``--help``) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from papers_shared._version import __version__
from papers_shared.lazy import lazy_exports

if TYPE_CHECKING:
    from papers_shared.checkpoint import (
        CheckpointError,
        CheckpointMismatchError,
        load_state_dict_checked,
        read_state_dict,
        save_safetensors,
        unwrap_state_dict,
    )
    from papers_shared.counting import (
        FLOP_CONVENTION,
        FlopCount,
        ParamCount,
        count_flops,
        count_parameters,
    )
    from papers_shared.data_loading import build_dataloader, build_sampler
    from papers_shared.lazy import import_ref, lazy_exports
    from papers_shared.memory import PeakMemory, measure_peak_memory
    from papers_shared.methods import DemoResult, Method, Table, lazy_method
    from papers_shared.progress import progress_bar
    from papers_shared.runs import make_run_dir, plot_curves, write_metrics
    from papers_shared.seeding import seed_everything, seed_hash
    from papers_shared.sharding import parse_shard, take_shard
    from papers_shared.trainer import (
        NonFiniteLossError,
        RunFolderError,
        StepOutput,
        Trainer,
        TrainerConfig,
        TrainResult,
        TrainTask,
    )
    from papers_shared.verdict import ArmStats, ClaimVerdict, judge_claim

_EXPORTS = {
    "papers_shared.checkpoint": (
        "CheckpointError",
        "CheckpointMismatchError",
        "load_state_dict_checked",
        "read_state_dict",
        "save_safetensors",
        "unwrap_state_dict",
    ),
    "papers_shared.counting": (
        "FLOP_CONVENTION",
        "FlopCount",
        "ParamCount",
        "count_flops",
        "count_parameters",
    ),
    "papers_shared.data_loading": ("build_dataloader", "build_sampler"),
    "papers_shared.memory": ("PeakMemory", "measure_peak_memory"),
    "papers_shared.lazy": ("import_ref", "lazy_exports"),
    "papers_shared.methods": ("DemoResult", "Method", "Table", "lazy_method"),
    "papers_shared.progress": ("progress_bar",),
    "papers_shared.runs": ("make_run_dir", "plot_curves", "write_metrics"),
    "papers_shared.seeding": ("seed_everything", "seed_hash"),
    "papers_shared.sharding": ("parse_shard", "take_shard"),
    "papers_shared.trainer": (
        "NonFiniteLossError",
        "RunFolderError",
        "StepOutput",
        "Trainer",
        "TrainerConfig",
        "TrainResult",
        "TrainTask",
    ),
    "papers_shared.verdict": ("ArmStats", "ClaimVerdict", "judge_claim"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "CheckpointError",
    "CheckpointMismatchError",
    "load_state_dict_checked",
    "read_state_dict",
    "save_safetensors",
    "unwrap_state_dict",
    "FLOP_CONVENTION",
    "FlopCount",
    "ParamCount",
    "count_flops",
    "count_parameters",
    "build_dataloader",
    "build_sampler",
    "PeakMemory",
    "measure_peak_memory",
    "DemoResult",
    "Method",
    "Table",
    "lazy_method",
    "lazy_exports",
    "import_ref",
    "progress_bar",
    "make_run_dir",
    "plot_curves",
    "write_metrics",
    "seed_everything",
    "seed_hash",
    "parse_shard",
    "take_shard",
    "NonFiniteLossError",
    "RunFolderError",
    "StepOutput",
    "Trainer",
    "TrainerConfig",
    "TrainResult",
    "TrainTask",
    "ArmStats",
    "ClaimVerdict",
    "judge_claim",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)
