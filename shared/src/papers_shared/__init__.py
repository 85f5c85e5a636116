"""Shared utilities for the papers monorepo (only what two or more method packages need)."""

from papers_shared._version import __version__
from papers_shared.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    load_state_dict_checked,
    read_state_dict,
    save_safetensors,
    unwrap_state_dict,
)
from papers_shared.counting import FlopCount, ParamCount, count_flops, count_parameters
from papers_shared.methods import DemoResult, Method, Table
from papers_shared.progress import progress_bar
from papers_shared.runs import make_run_dir, plot_curves, write_metrics
from papers_shared.seeding import seed_everything, seed_hash
from papers_shared.sharding import parse_shard, take_shard

__all__ = [
    "__version__",
    "CheckpointError",
    "CheckpointMismatchError",
    "load_state_dict_checked",
    "read_state_dict",
    "save_safetensors",
    "unwrap_state_dict",
    "FlopCount",
    "ParamCount",
    "count_flops",
    "count_parameters",
    "DemoResult",
    "Method",
    "Table",
    "progress_bar",
    "make_run_dir",
    "plot_curves",
    "write_metrics",
    "seed_everything",
    "seed_hash",
    "parse_shard",
    "take_shard",
]
