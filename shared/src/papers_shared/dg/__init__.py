"""A DomainBed-style harness shared by the domain-generalization packages (``ridg``, ``causeb``)."""

from papers_shared.dg.algorithms import (
    ALGORITHMS,
    ERM,
    Algorithm,
    Minibatches,
    get_algorithm_class,
    hparam_space,
    register_algorithm,
)
from papers_shared.dg.compare import RunResult, compare_algorithms, comparison_table, mean_accuracy
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
from papers_shared.dg.trainer import TrainConfig, accuracy, load_algorithm, train, train_algorithm

__all__ = [
    "ALGORITHMS",
    "ERM",
    "Algorithm",
    "Minibatches",
    "get_algorithm_class",
    "hparam_space",
    "register_algorithm",
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
    "TrainConfig",
    "accuracy",
    "load_algorithm",
    "train",
    "train_algorithm",
    "RunResult",
    "compare_algorithms",
    "comparison_table",
    "mean_accuracy",
]
