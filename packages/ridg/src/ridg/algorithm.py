"""``RIDG``: ERM plus the rationale-invariance term, in DomainBed's ``update`` / ``predict`` form."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from papers_shared.dg.algorithms import ERM, Minibatches, make_adam, register_algorithm
from papers_shared.dg.hparams import HParam
from ridg.config import RIDGConfig, ridg_hparams
from ridg.losses import RationaleInvarianceLoss

__all__ = ["RIDG", "BANK_PREFIX", "ridg_hparams"]

logger = logging.getLogger(__name__)

BANK_PREFIX = "invariance."


@register_algorithm
class RIDG(ERM):
    """Rationale Invariance for Domain Generalization: L = CE(W z + b, y) + alpha * L_inv.

    Same ``featurizer`` / ``classifier`` / ``network`` attributes as DomainBed's ERM (so the
    official ``model_dict`` loads strictly); the class-mean bank lives in ``invariance.bank``
    (C, K, D) with its ``invariance.initialised`` flags and is optional when loading.
    ``predict`` is a plain ERM forward; the bank is used only by ``update``.
    """

    hparam_help = "momentum, ridg_reg (alpha), ridg_reduction, ridg_variant, ridg_bank_dtype"
    optional_state_prefixes: ClassVar[tuple[str, ...]] = (BANK_PREFIX,)

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
        super().__init__(input_shape, num_classes, num_domains, hparams, make_optimizer)
        self.config = RIDGConfig.from_hparams(self.hparams)  # validates the values
        self.invariance = RationaleInvarianceLoss(
            num_classes,
            self.featurizer.n_outputs,
            momentum=self.config.momentum,
            reduction=self.config.ridg_reduction,
            variant=self.config.ridg_variant,
            use_closed_form=self.config.ridg_closed_form,
            bank_dtype=self.config.ridg_bank_dtype,
            min_class_count=self.config.ridg_min_class_count,
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
            if self.config.ridg_double_forward:  # official: a second pass (new dropout mask)
                logits = classifier(featurizer(x))
            else:
                logits = classifier(features)
            ce = F.cross_entropy(logits, y)
        # full precision for the bank and the distance; under DDP the bank update all-reduces
        # the class sums, and the head weight's gradient from this term joins DDP's all-reduce
        invariance = self.invariance(features.float(), self.classifier, y)
        loss = ce + self.config.ridg_reg * invariance
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
