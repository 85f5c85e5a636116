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
from torch.amp.grad_scaler import GradScaler

from papers_shared.dg.hparams import HParam, HParamSpace, base_hparam_space
from papers_shared.dg.networks import build_classifier, build_featurizer
from papers_shared.distributed import DistContext, autocast, wrap_ddp
from papers_shared.trainer import NonFiniteLossError

__all__ = [
    "Algorithm",
    "ERM",
    "Minibatches",
    "ALGORITHMS",
    "register_algorithm",
    "get_algorithm_class",
    "hparam_space",
    "complete_hparams",
    "PRECISIONS",
    "AMP_DTYPES",
    "resolve_precision",
    "NonFiniteLossError",
    "SkippedStep",
]

# ``--precision`` choices (the workspace's one vocabulary) -> autocast dtype (None: full
# precision). ``auto`` is resolved per device by :func:`resolve_precision`; fp16 also scales the
# loss. ``none`` is the old ``--amp`` spelling of fp32, still accepted.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AMP_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "none": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on a CUDA device that supports it, else ``fp32``; ``none`` -> ``fp32``.

    Raises ``ValueError`` for an unknown name and for ``fp16`` on a non-CUDA device (fp16
    autocast with loss scaling needs CUDA).
    """
    if precision not in (*PRECISIONS, "none"):
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision 'fp16' (autocast + loss scaling) needs a CUDA device, got {device}; "
            "use bf16 or fp32"
        )
    return "fp32" if precision == "none" else precision


class SkippedStep(FloatingPointError):
    """Raised by :meth:`Algorithm.backward_step` for a non-finite loss, before any backward
    pass or optimizer step. :meth:`Algorithm.guarded_update` catches it and restores the
    buffers; called through plain ``update`` it reaches the caller."""


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


def complete_hparams(
    algorithm: type[Algorithm], hparams: Mapping[str, Any], dataset: str | None = None
) -> dict[str, Any]:
    """``hparams`` with every missing name filled from the registry defaults: the one place
    where an algorithm built without a full hyper-parameter dict gets its defaults.

    ``dataset`` selects the dataset-dependent defaults (``lr``, ``weight_decay``,
    ``batch_size``); None means DomainBed's defaults for its image datasets (PACS and the
    like). Nothing is inferred from the input size.
    """
    space = hparam_space(algorithm, dataset or "PACS")
    return {**{name: h.default for name, h in space.items()}, **dict(hparams)}


class Algorithm(nn.Module):
    """A domain-generalization method: one ``update`` per step over one minibatch per domain.

    minibatches: list of ``(x: (B, C, H, W), y: (B,))``, one per training domain.
    """

    hparam_help: ClassVar[str] = ""
    # state_dict prefixes a checkpoint may lack (e.g. buffers the official code did not save)
    optional_state_prefixes: ClassVar[tuple[str, ...]] = ()

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
        self.hparams = complete_hparams(type(self), hparams)
        # Plain attributes (not submodules): DDP wrappers by submodule name, mixed precision.
        self._parallel: dict[str, nn.Module] = {}
        self._amp_device = torch.device("cpu")
        self._amp_dtype: torch.dtype | None = None
        self._grad_scaler: GradScaler | None = None

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

    def set_precision(self, precision: str, device: torch.device) -> str:
        """``precision``: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (see :func:`resolve_precision`)
        for :meth:`autocast` (fp16 with a ``GradScaler`` in :meth:`backward_step`). CUDA runs
        both low precisions; CPU runs bf16 only. Returns the resolved name."""
        resolved = resolve_precision(precision, device)
        self._amp_device = device
        self._amp_dtype = AMP_DTYPES[resolved]
        self._grad_scaler = GradScaler("cuda") if resolved == "fp16" else None
        return resolved

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast context for ``update``'s forward passes (no-op without ``set_precision``)."""
        dtype = self._amp_dtype or torch.bfloat16
        with autocast(
            self._amp_device, enabled=self._amp_dtype is not None, dtype=dtype, allow_cpu=True
        ):
            yield

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``zero_grad``, ``backward`` and ``step`` (loss-scaled under fp16 autocast).

        A non-finite loss (on any rank: the check is all-reduced, so every rank skips together)
        raises :class:`SkippedStep` before the backward pass: no gradient, no optimizer or
        scaler step.
        """
        if not _finite_everywhere(loss):
            raise SkippedStep(f"non-finite loss ({loss.detach().float().item()})")
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

    def guarded_update(
        self, minibatches: Minibatches, unlabeled: Sequence[torch.Tensor] | None = None
    ) -> dict[str, float] | None:
        """``update``, or None when its loss is not finite; then the step leaves no trace.

        Every buffer (BatchNorm statistics, memory banks, their flags) is copied before the
        forward pass and copied back after a skipped step, and the optimizer is never stepped
        (:meth:`backward_step` refuses first), so parameters, optimizer and scaler state are
        untouched too. The copy costs one extra buffer-sized block of memory.
        """
        buffers = [b for b in self.buffers() if b is not None]
        snapshot = [b.detach().clone() for b in buffers]
        try:
            return self.update(minibatches, unlabeled)
        except SkippedStep:
            with torch.no_grad():
                for buffer, saved in zip(buffers, snapshot, strict=True):
                    buffer.copy_(saved)
            return None

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> logits (B, K)."""
        raise NotImplementedError


def _finite_everywhere(loss: torch.Tensor) -> bool:
    """Whether ``loss`` is finite on every rank (one all-reduce when distributed)."""
    import torch.distributed as dist

    bad = torch.tensor(
        0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0, dtype=torch.float32
    )
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":
            bad = bad.to(loss.device)
        dist.all_reduce(bad)
    return float(bad) == 0.0


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
