"""``RIDG``: ERM plus the rationale-invariance term, in DomainBed's ``update`` / ``predict`` form."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from papers_shared.dg import (
    ERM,
    HParam,
    Minibatches,
    default_hparams,
    hparam_space,
    register_algorithm,
)
from papers_shared.dg.algorithms import make_adam
from ridg.losses import BANK_DTYPES, REDUCTIONS, VARIANTS, RationaleInvarianceLoss

__all__ = ["RIDG", "BANK_PREFIX", "ridg_hparams"]

logger = logging.getLogger(__name__)

BANK_PREFIX = "invariance."


def _fixed(value: Any) -> Callable[[Any], Any]:
    return lambda r: value


def ridg_hparams(dataset: str) -> dict[str, HParam]:
    """RIDG's own hyper-parameters (the official fork's registry plus our switches)."""
    return {
        "resnet18": HParam(True, _fixed(True), "ResNet-18 (the paper's main table)"),
        "momentum": HParam(
            0.001,
            lambda r: 10 ** r.uniform(-4, -1),
            "weight of the new batch mean in the class-mean bank (paper: m in [1e-4, 0.1])",
        ),
        "ridg_reg": HParam(
            0.01,
            lambda r: 10 ** r.uniform(-2, -1),
            "alpha, weight of the invariance loss (paper text: [1e-3, 0.1])",
        ),
        "ridg_reduction": HParam(
            "official", _fixed("official"), f"loss normalisation, one of {REDUCTIONS}"
        ),
        "ridg_variant": HParam(
            "rationale", _fixed("rationale"), f"what is made invariant / target, one of {VARIANTS}"
        ),
        "ridg_closed_form": HParam(True, _fixed(True), "memory-exact closed form (else naive)"),
        "ridg_double_forward": HParam(
            False, _fixed(False), "two featurizer passes per step, as the official code"
        ),
        "ridg_min_class_count": HParam(
            1, _fixed(1), "classes with fewer samples in a batch are left out of the loss"
        ),
        "ridg_bank_dtype": HParam(
            "float32", _fixed("float32"), f"bank storage, one of {sorted(BANK_DTYPES)}"
        ),
    }


@register_algorithm
class RIDG(ERM):
    """Rationale Invariance for Domain Generalization: L = CE(W z + b, y) + alpha * L_inv.

    Same ``featurizer`` / ``classifier`` / ``network`` attributes as DomainBed's ERM (so the
    official ``model_dict`` loads strictly); the class-mean bank lives in ``invariance.bank``
    (C, K, D) with its ``invariance.initialised`` flags and is optional when loading.
    ``predict`` is a plain ERM forward; the bank is used only by ``update``.
    """

    hparam_help = "momentum, ridg_reg (alpha), ridg_reduction, ridg_variant, ridg_bank_dtype"

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        num_domains: int,
        hparams: Mapping[str, Any],
        make_optimizer: Callable[[Any, Mapping[str, Any]], torch.optim.Optimizer] = make_adam,
    ) -> None:
        if bool(hparams.get("nonlinear_classifier", False)):
            raise ValueError(
                "RIDG needs a linear classifier (the rationale W[k, j] * z[j] is defined only for "
                "a linear last layer); set hparams nonlinear_classifier=false"
            )
        defaults = default_hparams(hparam_space(type(self), ""))  # missing names -> defaults
        super().__init__(
            input_shape, num_classes, num_domains, {**defaults, **hparams}, make_optimizer
        )
        self.invariance = RationaleInvarianceLoss(
            num_classes,
            self.featurizer.n_outputs,
            momentum=float(self.hparams["momentum"]),
            reduction=str(self.hparams["ridg_reduction"]),
            variant=str(self.hparams["ridg_variant"]),
            use_closed_form=bool(self.hparams["ridg_closed_form"]),
            bank_dtype=str(self.hparams["ridg_bank_dtype"]),
            min_class_count=int(self.hparams["ridg_min_class_count"]),
        )

    @classmethod
    def extra_hparams(cls, dataset: str) -> dict[str, HParam]:
        return ridg_hparams(dataset)

    def update(
        self, minibatches: Minibatches, unlabeled: Sequence[torch.Tensor] | None = None
    ) -> dict[str, float]:
        x = torch.cat([x for x, _ in minibatches])
        y = torch.cat([y for _, y in minibatches])
        featurizer, classifier = self.parallel("featurizer"), self.parallel("classifier")
        with self.autocast():
            features = featurizer(x)  # (N, D)
            if self.hparams["ridg_double_forward"]:  # official: a second pass (new dropout mask)
                logits = classifier(featurizer(x))
            else:
                logits = classifier(features)
            ce = F.cross_entropy(logits, y)
        # full precision for the bank and the distance; under DDP the bank update all-reduces
        # the class sums, and the head weight's gradient from this term joins DDP's all-reduce
        invariance = self.invariance(features.float(), self.classifier, y)
        loss = ce + float(self.hparams["ridg_reg"]) * invariance
        self.backward_step(loss, self.optimizer)
        return {"loss": loss.item(), "ce": ce.item(), "invariance": invariance.item()}

    def ddp_modules(self) -> list[str]:
        """Two DDP wrappers: ``update`` needs the features as well as the logits. The head's
        weight is also used outside its forward (the invariance term): its gradient is
        accumulated once per step, before DDP averages it."""
        return ["featurizer", "classifier"]

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Strict load in which the bank buffers may be absent (official checkpoints lack them);
        a missing bank restarts empty, as in the official code."""
        state = dict(state_dict)
        for key, value in self.state_dict().items():
            if key.startswith(BANK_PREFIX) and key not in state:
                state[key] = torch.zeros_like(value)
        return super().load_state_dict(state, strict=strict, assign=assign)
