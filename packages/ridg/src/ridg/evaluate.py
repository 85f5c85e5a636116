"""Evaluate a saved DomainBed checkpoint on every domain of a dataset."""

from __future__ import annotations

from pathlib import Path

import torch

import ridg.algorithm  # noqa: F401  (registers RIDG for load_algorithm)
from papers_shared.dg import (
    FastDataLoader,
    accuracy,
    get_dataset,
    get_dataset_class,
    load_algorithm,
)

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(
    model_path: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> dict[str, float]:
    """Accuracy per domain (un-augmented, whole domain) of a ``model.pkl``; domain name -> acc."""
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path} (written by `ridg train`)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    algorithm = load_algorithm(path)
    args = checkpoint.get("args", {})
    name = dataset or args.get("dataset")
    if name is None:
        raise ValueError(f"{path} does not name its dataset; pass --dataset")
    test_envs = list(range(len(get_dataset_class(name).ENVIRONMENTS)))
    domains = get_dataset(name, data_dir or args.get("data_dir"), test_envs, {**algorithm.hparams})
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    algorithm.to(target)
    return {
        env_name: accuracy(algorithm, FastDataLoader(env, batch_size), target)
        for env_name, env in zip(type(domains).ENVIRONMENTS, domains.datasets)
    }
