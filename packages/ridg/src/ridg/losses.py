"""The rationale-invariance regulariser of RIDG (Chen et al., ICCV 2023).

For a linear head ``logits = z @ W.T + b`` the *rationale* of sample n is the K x D matrix
``R[k, n, j] = W[k, j] * z[n, j]`` (bias excluded), so ``R.sum(-1).T + b == logits``. A bank keeps
one exponential-moving-average K x D mean rationale per class; the loss pulls every sample's
rationale towards the (stop-gradient) mean of its class.

Shapes: N batch, K classifier outputs (= classes C), D feature dim, P classes present in the batch.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

__all__ = [
    "REDUCTIONS",
    "VARIANTS",
    "BANK_DTYPES",
    "RationaleInvarianceLoss",
    "rationale",
    "naive_rationale_loss",
    "closed_form_rationale_loss",
    "sample_weights",
]

logger = logging.getLogger(__name__)

REDUCTIONS = ("official", "paper", "mse")
# rationale: the method. feature / logit: invariance of z or of W z instead (paper's ablation).
# fixed_target (m = 0), batch_target (m = 1), zero_target: the paper's ablation of the target.
VARIANTS = ("rationale", "feature", "logit", "fixed_target", "batch_target", "zero_target")
BANK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Bank slices handled at once (elements of a (p, K, D) block) by the memory-exact path.
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def rationale(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """R[k, n, j] = W[k, j] * z[n, j]. features: (N, D), weight: (K, D) -> (K, N, D)."""
    return weight.unsqueeze(1) * features.unsqueeze(0)


def sample_weights(
    labels: torch.Tensor,
    reduction: str,
    rep_shape: tuple[int, ...],
    min_class_count: int = 1,
    class_counts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample weights w_n so that ``loss = sum_n w_n * ||rep_n - target_{y_n}||^2``.

    rep_shape: shape of one sample's representation ((K, D) rationale, (D,) feature, (K,) logit).
    ``official``: per class, mean over samples and all but the last representation axis, summed
    over classes. ``paper``: total squared distance / N. ``mse``: per-class mean over every
    element, summed over classes. Samples of classes with fewer than ``min_class_count`` samples
    in the batch get weight 0. ``class_counts`` (C,): per-class counts of the batch the weights
    refer to (data-parallel training: the global batch of which ``labels`` is one rank's share);
    default: the counts in ``labels``. Returns (classes (P,), inverse (N,), counts (P,), w (N,)),
    counts being those in ``labels``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    batch_counts = counts if class_counts is None else class_counts[classes]
    per_sample_count = batch_counts[inverse].to(torch.float64)
    batch_size = len(labels) if class_counts is None else float(class_counts.sum())
    lead = 1
    for size in rep_shape[:-1]:
        lead *= size
    if reduction == "official":
        w = 1.0 / (lead * per_sample_count)
    elif reduction == "paper":
        w = torch.full_like(per_sample_count, 1.0 / batch_size)
    else:
        w = 1.0 / (lead * rep_shape[-1] * per_sample_count)
    if min_class_count > 1:
        w = torch.where(per_sample_count >= min_class_count, w, torch.zeros_like(w))
    return classes, inverse, counts, w


def naive_rationale_loss(
    features: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    target: torch.Tensor | None,
    reduction: str = "official",
    min_class_count: int = 1,
    class_counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference form that materialises the (K, N, D) rationale; use it to check the closed form.

    target: (C, K, D) class-mean bank (treated as constant) or None for a zero target.
    class_counts: see :func:`sample_weights`.
    """
    R = rationale(features, weight)  # (K, N, D)
    _, _, _, w = sample_weights(
        labels, reduction, tuple(weight.shape), min_class_count, class_counts
    )
    if target is not None:
        R = R - target.detach()[labels].to(R.dtype).transpose(0, 1)
    per_sample = R.pow(2).sum(dim=(0, 2))  # (N,)
    return (w.to(R.dtype) * per_sample).sum()


class _BankContraction(torch.autograd.Function):
    """t[p, j] = sum_k W[k, j] * bank[classes[p], k, j] and ||bank[classes[p]]||^2, chunked.

    One pass over the bank rows of the present classes; saves only a reference to the bank (no
    (P, K, D) copy) and the backward pass re-reads the chunks. The bank receives no gradient;
    the norms are constants.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        weight: torch.Tensor,
        bank: torch.Tensor,
        classes: torch.Tensor,
        chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(bank, classes)
        ctx.chunk = chunk
        t = weight.new_empty(len(classes), weight.shape[1])
        norms = weight.new_empty(len(classes))
        for start in range(0, len(classes), chunk):
            block = bank.index_select(0, classes[start : start + chunk]).to(weight.dtype)
            t[start : start + chunk] = (block * weight.unsqueeze(0)).sum(dim=1)
            norms[start : start + chunk] = block.pow(2).sum(dim=(1, 2))
        ctx.mark_non_differentiable(norms)
        return t, norms

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_t: torch.Tensor, grad_norms: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, None, None, None]:
        bank, classes = ctx.saved_tensors
        grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_weight = grad_t.new_zeros(bank.shape[1], bank.shape[2])
            for start in range(0, len(classes), ctx.chunk):
                idx = classes[start : start + ctx.chunk]
                block = bank.index_select(0, idx).to(grad_t.dtype)
                grad_weight += (block * grad_t[start : start + ctx.chunk].unsqueeze(1)).sum(0)
        return grad_weight, None, None, None


def _chunk_classes(num_outputs: int, feat_dim: int, chunk_elements: int) -> int:
    return max(1, chunk_elements // max(1, num_outputs * feat_dim))


def closed_form_rationale_loss(
    features: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    target: torch.Tensor | None,
    reduction: str = "official",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    min_class_count: int = 1,
    class_counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Same value and gradients as :func:`naive_rationale_loss`, without the (K, N, D) tensor.

    With s_j = sum_k W_kj^2 and t_cj = sum_k W_kj * B_ckj:
    ||R_n - B_c||^2 = sum_j (z_nj^2 s_j - 2 z_nj t_cj) + ||B_c||^2, so the loss needs only
    (N, D), (P, D) and chunks of the bank.
    """
    classes, inverse, _, w = sample_weights(
        labels, reduction, tuple(weight.shape), min_class_count, class_counts
    )
    w = w.to(features.dtype)
    s = weight.pow(2).sum(dim=0)  # (D,)
    loss = (w * (features.pow(2) @ s)).sum()
    if target is None:
        return loss
    # sum over samples of class c of w_n * z_n = omega_c * mean feature of class c
    weighted_sum = features.new_zeros(len(classes), features.shape[1])
    weighted_sum = weighted_sum.index_add(0, inverse, w.unsqueeze(1) * features)  # (P, D)
    chunk = _chunk_classes(weight.shape[0], weight.shape[1], chunk_elements)
    t, norms = _BankContraction.apply(weight, target.detach(), classes, chunk)  # (P, D), (P,)
    loss = loss - 2.0 * (weighted_sum * t).sum()
    omega = features.new_zeros(len(classes)).index_add(0, inverse, w)  # (P,)
    return loss + (omega * norms).sum()


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def _stochastic_round_bf16(x: torch.Tensor) -> torch.Tensor:
    """Round fp32 to bf16 stochastically (unbiased), so tiny EMA steps are not rounded away."""
    bits = x.float().contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32, device=x.device)
    return ((bits + noise) & -65536).view(torch.float32).to(torch.bfloat16)


class RationaleInvarianceLoss(nn.Module):
    """RIDG's invariance term for any ``features`` + ``nn.Linear`` head, with its class-mean bank.

    Call ``loss = module(features, head, labels)`` with features: (N, D), head: ``nn.Linear(D, K)``
    (or its (K, D) weight), labels: (N,) in [0, num_classes). In training mode each call first
    updates the bank for the classes in the batch (first sight copies the batch mean; afterwards
    ``bank = (1 - momentum) * bank + momentum * batch_mean``, momentum = weight of the *new* mean)
    and then measures the distance to the updated, stop-gradient bank. In eval mode the bank is
    left untouched. Under ``torch.distributed`` the class means are all-reduced before the
    update, so every rank holds the same bank, and the loss is normalised by the global batch's
    class counts and multiplied by the world size: each rank returns its share of the global
    loss scaled so that DDP's gradient average equals the one-process gradient.

    Args:
        num_classes: C, the number of classes (= K, the head's outputs).
        feat_dim: D.
        momentum: weight of the new batch mean in the moving average (paper's m, default 0.001).
        reduction: ``official`` (code: per-class mean over K and samples, summed over classes),
            ``paper`` (equation: squared Frobenius distance summed, / N) or ``mse`` (pseudo-code).
        variant: ``rationale`` (the method), ``feature`` / ``logit`` invariance, or the target
            ablations ``fixed_target`` (m = 0), ``batch_target`` (m = 1), ``zero_target``.
        use_closed_form: memory-exact path (default); False materialises the (K, N, D) tensor.
        bank_dtype: ``float32`` (default), ``bfloat16`` (stochastic rounding on update) or
            ``float16``; a (C, K, D) bank is C*K*D elements (DomainNet ResNet-18: 61 M).
        min_class_count: classes with fewer samples in the batch are left out of the loss (the
            bank is still updated); 1 (default) keeps all, as the official code.
    """

    bank: torch.Tensor
    initialised: torch.Tensor
    seen_counts: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        momentum: float = 0.001,
        reduction: str = "official",
        variant: str = "rationale",
        use_closed_form: bool = True,
        bank_dtype: str = "float32",
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        min_class_count: int = 1,
    ) -> None:
        super().__init__()
        if num_classes < 1 or feat_dim < 1:
            raise ValueError(
                f"num_classes and feat_dim must be >= 1, got {num_classes} and {feat_dim}"
            )
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] (weight of the new mean), got {momentum}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if bank_dtype not in BANK_DTYPES:
            raise ValueError(f"bank_dtype must be one of {sorted(BANK_DTYPES)}, got {bank_dtype!r}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.momentum = momentum
        self.reduction = reduction
        self.variant = variant
        self.use_closed_form = use_closed_form
        self.bank_dtype = bank_dtype
        self.chunk_elements = chunk_elements
        self.min_class_count = min_class_count
        bank_shape: tuple[int, ...] = {
            "feature": (num_classes, feat_dim),
            "logit": (num_classes, num_classes),
        }.get(variant, (num_classes, num_classes, feat_dim))
        self.register_buffer("bank", torch.zeros(bank_shape, dtype=BANK_DTYPES[bank_dtype]))
        self.register_buffer("initialised", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer(
            "seen_counts", torch.zeros(num_classes, dtype=torch.long), persistent=False
        )

    @property
    def effective_momentum(self) -> float:
        return {"fixed_target": 0.0, "batch_target": 1.0}.get(self.variant, self.momentum)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, momentum={self.momentum}, "
            f"reduction={self.reduction!r}, variant={self.variant!r}, bank={tuple(self.bank.shape)} "
            f"{self.bank_dtype}"
        )

    def bank_bytes(self) -> int:
        return self.bank.numel() * self.bank.element_size()

    def _check(self, features: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"features must be (N, {self.feat_dim}), got {tuple(features.shape)}")
        if weight.shape != (self.num_classes, self.feat_dim):
            raise ValueError(
                f"head weight must be ({self.num_classes}, {self.feat_dim}) (nn.Linear layout), "
                f"got {tuple(weight.shape)}"
            )
        if labels.shape != (features.shape[0],):
            raise ValueError(
                f"labels must be ({features.shape[0]},) to match features, got {tuple(labels.shape)}"
            )
        if labels.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
            raise TypeError(f"labels must be integer class ids, got {labels.dtype}")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got range "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )

    def representation(self, features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Per-sample quantity the variant makes invariant: (K, N, D), (N, D) or (N, K)."""
        if self.variant == "feature":
            return features
        if self.variant == "logit":
            return features @ weight.t()
        return rationale(features, weight)

    def global_class_counts(self, labels: torch.Tensor) -> torch.Tensor:
        """(C,) per-class sample counts summed over all ranks (one all-reduce)."""
        counts = torch.bincount(labels, minlength=self.num_classes)
        torch.distributed.all_reduce(counts)
        return counts

    @torch.no_grad()
    def update_bank(
        self,
        features: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        class_counts: torch.Tensor | None = None,
    ) -> None:
        """Moving-average update of the bank rows of the classes in ``labels`` (no autograd).

        Under ``torch.distributed`` the class sums are all-reduced (``class_counts``: the
        :meth:`global_class_counts`, computed when not given), so every rank applies the same
        update with the class means of the global batch.
        """
        if self.variant == "zero_target":
            return
        features, weight = features.detach(), weight.detach()
        if _world_size() > 1:  # DDP: global class means, so every rank keeps the same bank
            sums = features.new_zeros(self.num_classes, features.shape[1])
            sums.index_add_(0, labels, features)
            torch.distributed.all_reduce(sums)
            if class_counts is None:
                class_counts = self.global_class_counts(labels)
            counts = class_counts.to(features.dtype)
            classes = torch.nonzero(counts).flatten()
            sums, counts = sums[classes], counts[classes].long()
        else:
            classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
            sums = features.new_zeros(len(classes), features.shape[1]).index_add(
                0, inverse, features
            )
        means = sums / counts.unsqueeze(1).to(features.dtype)  # (P, D) class-mean features
        if self.variant == "logit":
            means = means @ weight.t()  # (P, K); the mean of W z is W (mean z)
        m = self.effective_momentum
        per_class = means.shape[1] * (weight.shape[0] if self.bank.dim() == 3 else 1)
        chunk = max(1, self.chunk_elements // per_class)
        for start in range(0, len(classes), chunk):
            idx = classes[start : start + chunk]
            new = means[start : start + chunk]
            if self.bank.dim() == 3:  # batch mean rationale of class c is W * mean_c(z)
                new = weight.unsqueeze(0) * new.unsqueeze(1)
            mixed = self.bank.index_select(0, idx).to(new.dtype)
            mixed.lerp_(new, m)  # (1 - m) * old + m * new, in place
            first = ~self.initialised[idx]
            if first.any():  # first sight: copy the batch mean
                mixed[first] = new[first]
            self.bank.index_copy_(0, idx, self._to_bank_dtype(mixed))
        self.initialised[classes] = True
        self.seen_counts[classes] += counts

    def _to_bank_dtype(self, x: torch.Tensor) -> torch.Tensor:
        if self.bank.dtype == torch.bfloat16:
            return _stochastic_round_bf16(x)
        return x.to(self.bank.dtype)

    def distance(
        self,
        features: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        class_counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The invariance loss against the current bank (no update). Returns a scalar.

        ``class_counts`` (C,): normalise by these per-class counts (a global batch's) instead of
        the counts in ``labels`` (see :func:`sample_weights`).
        """
        target = None if self.variant == "zero_target" else self.bank
        if self.bank.dim() == 3:
            if self.use_closed_form:
                return closed_form_rationale_loss(
                    features,
                    weight,
                    labels,
                    target,
                    self.reduction,
                    self.chunk_elements,
                    self.min_class_count,
                    class_counts,
                )
            return naive_rationale_loss(
                features,
                weight,
                labels,
                target,
                self.reduction,
                self.min_class_count,
                class_counts,
            )
        rep = self.representation(features, weight)  # (N, S)
        _, _, _, w = sample_weights(
            labels, self.reduction, tuple(rep.shape[1:]), self.min_class_count, class_counts
        )
        diff = rep - self.bank.detach()[labels].to(rep.dtype)
        return (w.to(rep.dtype) * diff.pow(2).sum(dim=1)).sum()

    def forward(
        self, features: torch.Tensor, head: nn.Module | torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """features: (N, D), head: nn.Linear(D, K) or its weight (K, D), labels: (N,) -> scalar."""
        if isinstance(head, torch.Tensor):
            weight = head
        elif isinstance(head, nn.Linear):
            weight = head.weight
        else:
            raise TypeError(
                "rationale invariance needs a linear last layer (nn.Linear or its (K, D) weight); "
                f"got {type(head).__name__}"
            )
        self._check(features, weight, labels)
        if not self.training:
            return self.distance(features, weight, labels)
        world_size = _world_size()
        if world_size == 1:
            self.update_bank(features, weight, labels)
            return self.distance(features, weight, labels)
        # DDP: weights from the global batch's class counts, times the world size, so that
        # DDP's gradient average is the one-process gradient on the global batch
        class_counts = self.global_class_counts(labels)
        self.update_bank(features, weight, labels, class_counts)
        return world_size * self.distance(features, weight, labels, class_counts)
