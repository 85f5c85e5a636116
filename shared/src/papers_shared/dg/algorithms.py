"""DomainBed's two-method contract: ``update(minibatches) -> dict`` and ``predict(x)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from papers_shared.dg.hparams import HParam, HParamSpace, base_hparam_space
from papers_shared.dg.networks import build_classifier, build_featurizer

__all__ = [
    "Algorithm",
    "ERM",
    "Minibatches",
    "ALGORITHMS",
    "register_algorithm",
    "get_algorithm_class",
    "hparam_space",
]

Minibatches = Sequence[tuple[torch.Tensor, torch.Tensor]]
A = TypeVar("A", bound=type["Algorithm"])

ALGORITHMS: dict[str, type[Algorithm]] = {}


def register_algorithm(cls: A) -> A:
    """Class decorator: make an algorithm available by its class name (as DomainBed does)."""
    ALGORITHMS[cls.__name__] = cls
    return cls


def get_algorithm_class(name: str) -> type[Algorithm]:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; registered: {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]


def hparam_space(algorithm: type[Algorithm], dataset: str) -> HParamSpace:
    """Common hyper-parameters plus the algorithm's own (the algorithm's win on a name clash)."""
    return {**base_hparam_space(dataset), **algorithm.extra_hparams(dataset)}


class Algorithm(nn.Module):
    """A domain-generalization method: one ``update`` per step over one minibatch per domain.

    minibatches: list of ``(x: (B, C, H, W), y: (B,))``, one per training domain.
    """

    hparam_help: ClassVar[str] = ""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        num_domains: int,
        hparams: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.num_domains = num_domains
        self.hparams = dict(hparams)

    @classmethod
    def extra_hparams(cls, dataset: str) -> dict[str, HParam]:
        """The algorithm's own hyper-parameters (override in subclasses)."""
        return {}

    def update(
        self, minibatches: Minibatches, unlabeled: Sequence[torch.Tensor] | None = None
    ) -> dict[str, float]:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> logits (B, K)."""
        raise NotImplementedError


def make_adam(params: Any, hparams: Mapping[str, Any]) -> torch.optim.Adam:
    return torch.optim.Adam(
        params, lr=float(hparams["lr"]), weight_decay=float(hparams["weight_decay"])
    )


@register_algorithm
class ERM(Algorithm):
    """Empirical risk minimisation over the concatenated training domains."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        num_domains: int,
        hparams: Mapping[str, Any],
        make_optimizer: Callable[[Any, Mapping[str, Any]], torch.optim.Optimizer] = make_adam,
    ) -> None:
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.featurizer = build_featurizer(self.input_shape, self.hparams)
        self.classifier = build_classifier(
            self.featurizer.n_outputs,
            num_classes,
            bool(self.hparams.get("nonlinear_classifier", False)),
        )
        self.network = nn.Sequential(self.featurizer, self.classifier)
        self.optimizer = make_optimizer(self.network.parameters(), self.hparams)

    def update(
        self, minibatches: Minibatches, unlabeled: Sequence[torch.Tensor] | None = None
    ) -> dict[str, float]:
        x = torch.cat([x for x, _ in minibatches])
        y = torch.cat([y for _, y in minibatches])
        loss = F.cross_entropy(self.predict(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)
