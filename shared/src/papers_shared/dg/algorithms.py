"""DomainBed's two-method contract: ``update(minibatches) -> dict`` and ``predict(x)``.

For data-parallel training (``torchrun``) an algorithm names the submodules its ``update`` runs
through (:meth:`Algorithm.ddp_modules`); :meth:`Algorithm.distribute` wraps them in torch's
``DistributedDataParallel`` and ``update`` calls them via :meth:`Algorithm.parallel`. The
wrappers are not registered submodules, so ``state_dict`` keys never gain a ``module.`` prefix.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from papers_shared.dg.hparams import HParam, HParamSpace, base_hparam_space
from papers_shared.dg.networks import build_classifier, build_featurizer
from papers_shared.distributed import DistContext, autocast, wrap_ddp

__all__ = [
    "Algorithm",
    "ERM",
    "Minibatches",
    "ALGORITHMS",
    "register_algorithm",
    "get_algorithm_class",
    "hparam_space",
    "AMP_DTYPES",
]

# ``--amp`` choices: autocast dtype (None: full precision). fp16 also scales the loss.
AMP_DTYPES: dict[str, torch.dtype | None] = {
    "none": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}

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
        # Plain attributes (not submodules): DDP wrappers by submodule name, mixed precision.
        self._parallel: dict[str, nn.Module] = {}
        self._amp_device = torch.device("cpu")
        self._amp_dtype: torch.dtype | None = None
        self._grad_scaler: torch.amp.GradScaler | None = None

    @classmethod
    def extra_hparams(cls, dataset: str) -> dict[str, HParam]:
        """The algorithm's own hyper-parameters (override in subclasses)."""
        return {}

    # -- data-parallel training ---------------------------------------------------------------

    def ddp_modules(self) -> list[str]:
        """Names of the submodules ``update`` calls through :meth:`parallel`; together they must
        hold every optimised parameter. Empty (the default): the algorithm cannot run under DDP."""
        return []

    def distribute(self, ctx: DistContext, **ddp_kwargs: Any) -> None:
        """Wrap :meth:`ddp_modules` in ``DistributedDataParallel`` (no-op in one process).

        Call after moving the algorithm to its device. ``ddp_kwargs`` go to DDP (e.g.
        ``find_unused_parameters``, ``static_graph``). ``broadcast_buffers`` defaults to False:
        the harness's buffers never need rank 0's copy (frozen ResNet BatchNorm, GroupNorm CNN;
        an algorithm keeps its own buffers in sync, e.g. RIDG's bank), and the per-call
        broadcast would break modules called twice per step (RIDG's double forward, CausEB's
        projector) by changing BatchNorm statistics saved for backward.

        Raises ``NotImplementedError`` when the algorithm names no modules and ``ValueError``
        when an optimised parameter lies outside them (its gradient would not be averaged and
        the ranks would drift apart).
        """
        self._parallel = {}
        if not ctx.is_distributed:
            return
        names = self.ddp_modules()
        if not names:
            raise NotImplementedError(
                f"{type(self).__name__} does not support data-parallel training: override "
                "ddp_modules() and call self.parallel(name) in update()"
            )
        covered = {id(p) for name in names for p in getattr(self, name).parameters()}
        optimizers = [v for v in vars(self).values() if isinstance(v, torch.optim.Optimizer)]
        outside = [
            name
            for name, p in self.named_parameters()
            if id(p) not in covered
            and any(p is q for opt in optimizers for g in opt.param_groups for q in g["params"])
        ]
        if outside:
            raise ValueError(
                f"{type(self).__name__}: optimised parameters outside ddp_modules() {names}: "
                f"{outside[:5]}{' ...' if len(outside) > 5 else ''}"
            )
        options = {"broadcast_buffers": False, **ddp_kwargs}
        self._parallel = {name: wrap_ddp(getattr(self, name), ctx, **options) for name in names}

    def undistribute(self) -> None:
        """Drop the DDP wrappers (the modules themselves are unchanged) and collect them now:
        a wrapper that outlives its process group can abort the process at exit."""
        self._parallel = {}
        gc.collect()

    def parallel(self, name: str) -> nn.Module:
        """Submodule ``name`` as ``update`` must call it: its DDP wrapper when distributed."""
        wrapped = self._parallel.get(name)
        return wrapped if wrapped is not None else getattr(self, name)

    # -- mixed precision --------------------------------------------------------------------------

    def set_precision(self, amp: str, device: torch.device) -> None:
        """``amp``: ``none``, ``bf16`` or ``fp16`` autocast in :meth:`autocast` (fp16 with a
        ``GradScaler`` in :meth:`backward_step`). CUDA runs both; CPU runs bf16 only."""
        if amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}")
        if amp == "fp16" and device.type != "cuda":
            raise ValueError("amp='fp16' (autocast + GradScaler) needs a CUDA device; use bf16")
        self._amp_device = device
        self._amp_dtype = AMP_DTYPES[amp]
        self._grad_scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast context for ``update``'s forward passes (no-op without ``set_precision``)."""
        dtype = self._amp_dtype or torch.bfloat16
        with autocast(
            self._amp_device, enabled=self._amp_dtype is not None, dtype=dtype, allow_cpu=True
        ):
            yield

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``zero_grad``, ``backward`` and ``step`` (loss-scaled under fp16 autocast)."""
        optimizer.zero_grad(set_to_none=True)
        if self._grad_scaler is None:
            loss.backward()
            optimizer.step()
            return
        self._grad_scaler.scale(loss).backward()
        self._grad_scaler.step(optimizer)
        self._grad_scaler.update()

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
        with self.autocast():
            loss = F.cross_entropy(self.parallel("network")(x), y)
        self.backward_step(loss, self.optimizer)
        return {"loss": loss.item()}

    def ddp_modules(self) -> list[str]:
        return ["network"]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)
