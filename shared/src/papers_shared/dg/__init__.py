"""A DomainBed-style harness shared by the domain-generalization packages (``ridg``, ``causeb``).

Names are imported on first use (torch loads only when a name that needs it is touched), so
``<package> --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from papers_shared.dg.algorithms import (
        ALGORITHMS,
        ERM,
        Algorithm,
        Minibatches,
        NonFiniteLossError,
        complete_hparams,
        get_algorithm_class,
        hparam_space,
        register_algorithm,
    )
    from papers_shared.dg.compare import (
        RunResult,
        arm_table,
        compare_algorithms,
        comparison_table,
        mean_accuracy,
        per_seed_accuracy,
    )
    from papers_shared.dg.datasets import (
        DATASETS,
        PACS,
        VLCS,
        ColoredDigits,
        DebugDomains,
        DomainList,
        DomainNet,
        FolderDomains,
        OfficeHome,
        RotatedDigits,
        TerraIncognita,
        get_dataset,
        get_dataset_class,
        register_dataset,
    )
    from papers_shared.dg.domainbed import register_with_domainbed
    from papers_shared.dg.evaluate import evaluate_checkpoint
    from papers_shared.dg.hparams import HParam, default_hparams, random_hparams, resolve_hparams
    from papers_shared.dg.loaders import FastDataLoader, InfiniteDataLoader, split_dataset
    from papers_shared.dg.networks import (
        DigitsCNN,
        ResNetFeaturizer,
        build_classifier,
        build_featurizer,
    )
    from papers_shared.dg.selection import select_hparams, select_run
    from papers_shared.dg.sweep import load_records, make_jobs, results_table, run_jobs
    from papers_shared.dg.trainer import (
        RunFolderError,
        TrainConfig,
        accuracy,
        check_replicas_in_sync,
        load_algorithm,
        train,
        train_algorithm,
    )

_SOURCES = {
    "algorithms": [
        "ALGORITHMS",
        "ERM",
        "Algorithm",
        "Minibatches",
        "NonFiniteLossError",
        "complete_hparams",
        "get_algorithm_class",
        "hparam_space",
        "register_algorithm",
    ],
    "compare": [
        "RunResult",
        "arm_table",
        "compare_algorithms",
        "comparison_table",
        "mean_accuracy",
        "per_seed_accuracy",
    ],
    "datasets": [
        "DATASETS",
        "PACS",
        "VLCS",
        "ColoredDigits",
        "DebugDomains",
        "DomainList",
        "DomainNet",
        "FolderDomains",
        "OfficeHome",
        "RotatedDigits",
        "TerraIncognita",
        "get_dataset",
        "get_dataset_class",
        "register_dataset",
    ],
    "domainbed": ["register_with_domainbed"],
    "evaluate": ["evaluate_checkpoint"],
    "hparams": ["HParam", "default_hparams", "random_hparams", "resolve_hparams"],
    "loaders": ["FastDataLoader", "InfiniteDataLoader", "split_dataset"],
    "networks": ["DigitsCNN", "ResNetFeaturizer", "build_classifier", "build_featurizer"],
    "selection": ["select_hparams", "select_run"],
    "sweep": ["load_records", "make_jobs", "results_table", "run_jobs"],
    "trainer": [
        "RunFolderError",
        "TrainConfig",
        "accuracy",
        "check_replicas_in_sync",
        "load_algorithm",
        "train",
        "train_algorithm",
    ],
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "ALGORITHMS",
    "ERM",
    "Algorithm",
    "Minibatches",
    "NonFiniteLossError",
    "complete_hparams",
    "get_algorithm_class",
    "hparam_space",
    "register_algorithm",
    "RunResult",
    "arm_table",
    "compare_algorithms",
    "comparison_table",
    "mean_accuracy",
    "per_seed_accuracy",
    "DATASETS",
    "PACS",
    "VLCS",
    "ColoredDigits",
    "DebugDomains",
    "DomainList",
    "DomainNet",
    "FolderDomains",
    "OfficeHome",
    "RotatedDigits",
    "TerraIncognita",
    "get_dataset",
    "get_dataset_class",
    "register_dataset",
    "register_with_domainbed",
    "evaluate_checkpoint",
    "HParam",
    "default_hparams",
    "random_hparams",
    "resolve_hparams",
    "FastDataLoader",
    "InfiniteDataLoader",
    "split_dataset",
    "DigitsCNN",
    "ResNetFeaturizer",
    "build_classifier",
    "build_featurizer",
    "select_hparams",
    "select_run",
    "load_records",
    "make_jobs",
    "results_table",
    "run_jobs",
    "RunFolderError",
    "TrainConfig",
    "accuracy",
    "check_replicas_in_sync",
    "load_algorithm",
    "train",
    "train_algorithm",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'papers_shared.dg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"papers_shared.dg.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
