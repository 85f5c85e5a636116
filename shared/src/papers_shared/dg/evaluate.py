"""Accuracy of a saved DomainBed model on every domain of a dataset (the ``eval`` verb)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from papers_shared.dg.datasets import get_dataset, get_dataset_class
from papers_shared.dg.loaders import FastDataLoader
from papers_shared.dg.trainer import accuracy, algorithm_from_checkpoint, read_domainbed_checkpoint

__all__ = ["evaluate_checkpoint"]

logger = logging.getLogger(__name__)


def evaluate_checkpoint(
    model_path: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 64,
    device: str | None = "auto",
    trust_checkpoint: bool = False,
) -> dict[str, float]:
    """Accuracy per domain (un-augmented, whole domain) of a ``model.pkl`` or of a run folder
    holding one; returns ``{domain name: accuracy in [0, 1]}``.

    ``dataset`` / ``data_dir`` default to the ones recorded in the checkpoint's ``args``.
    """
    checkpoint = read_domainbed_checkpoint(model_path, trust_checkpoint)
    algorithm = algorithm_from_checkpoint(checkpoint, path=str(model_path))
    args = checkpoint.get("args") or {}
    name = dataset or args.get("dataset")
    if name is None:
        raise ValueError(f"{model_path} does not name its dataset; pass --dataset")
    test_envs = list(range(len(get_dataset_class(name).ENVIRONMENTS)))  # no augmentation anywhere
    domains = get_dataset(name, data_dir or args.get("data_dir"), test_envs, algorithm.hparams)
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    algorithm.to(target)
    logger.info("evaluating %s on %s (%s)", model_path, name, target)
    return {
        env_name: accuracy(algorithm, FastDataLoader(env, batch_size), target)
        for env_name, env in zip(type(domains).ENVIRONMENTS, domains.datasets)
    }
