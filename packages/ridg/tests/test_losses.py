"""The rationale-invariance loss: equations, bank semantics, reductions, variants, memory."""

from __future__ import annotations

import pytest
import torch
from ridg import (
    REDUCTIONS,
    RationaleInvarianceLoss,
    closed_form_rationale_loss,
    naive_rationale_loss,
    rationale,
)
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode


def _batch(n: int = 10, k: int = 3, d: int = 6, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(k, d, generator=g, dtype=dtype, requires_grad=True)
    y = torch.randint(0, k, (n,), generator=g)
    bank = torch.randn(k, k, d, generator=g, dtype=dtype)
    return z, w, y, bank


def test_rationale_sums_to_logits_minus_bias():
    torch.manual_seed(0)
    head = nn.Linear(8, 4)
    z = torch.randn(5, 8)
    r = rationale(z, head.weight)
    assert r.shape == (4, 5, 8)
    torch.testing.assert_close(r.sum(-1).T + head.bias, head(z), atol=1e-5, rtol=0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("chunk_elements", [1, 20, 1 << 22])
def test_closed_form_equals_naive_with_gradients(reduction, chunk_elements):
    z, w, y, bank = _batch()
    naive = naive_rationale_loss(z, w, y, bank, reduction)
    closed = closed_form_rationale_loss(z, w, y, bank, reduction, chunk_elements)
    torch.testing.assert_close(closed, naive, rtol=1e-8, atol=0)
    g_naive = torch.autograd.grad(naive, [z, w])
    g_closed = torch.autograd.grad(closed, [z, w])
    for a, b in zip(g_closed, g_naive):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


def test_closed_form_equals_naive_for_zero_target():
    z, w, y, _ = _batch(seed=3)
    torch.testing.assert_close(
        closed_form_rationale_loss(z, w, y, None), naive_rationale_loss(z, w, y, None)
    )


class _MaxNumel(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            a.untyped_storage().data_ptr()
            for a in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(a, torch.Tensor)
        }  # views and in-place results alias an input: not new memory
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.max_numel = max(self.max_numel, t.numel())
        return out


@pytest.mark.parametrize("use_closed_form", [True, False])
def test_closed_form_never_builds_the_knd_tensor(use_closed_form):
    k, n, d = 16, 96, 64
    loss_fn = RationaleInvarianceLoss(k, d, use_closed_form=use_closed_form, chunk_elements=4096)
    z = torch.randn(n, d, requires_grad=True)
    head = nn.Linear(d, k)
    y = torch.arange(n) % k
    with _MaxNumel() as mode:
        loss_fn(z, head, y)  # first sight
        loss_fn(z, head, y).backward()
    if use_closed_form:  # blocks of <= chunk_elements, the (N, D) and (K, D) tensors
        assert mode.max_numel < k * n * d // 4
    else:
        assert mode.max_numel >= k * n * d


def test_bank_first_sight_then_moving_average_and_absent_classes_untouched():
    k, d, m = 3, 4, 0.25
    loss_fn = RationaleInvarianceLoss(k, d, momentum=m)
    head = nn.Linear(d, k)
    z1 = torch.randn(6, d)
    y1 = torch.tensor([0, 0, 1, 1, 0, 1])
    loss_fn(z1, head, y1)
    w = head.weight.detach()
    mean0 = w * z1[y1 == 0].mean(0)
    mean1 = w * z1[y1 == 1].mean(0)
    torch.testing.assert_close(loss_fn.bank[0], mean0)  # first sight copies the batch mean
    torch.testing.assert_close(loss_fn.bank[1], mean1)
    assert torch.equal(loss_fn.bank[2], torch.zeros(k, d))  # class 2 never seen
    assert loss_fn.initialised.tolist() == [True, True, False]
    z2 = torch.randn(4, d)
    y2 = torch.tensor([0, 2, 0, 2])
    loss_fn(z2, head, y2)
    torch.testing.assert_close(loss_fn.bank[0], (1 - m) * mean0 + m * (w * z2[y2 == 0].mean(0)))
    torch.testing.assert_close(loss_fn.bank[1], mean1)  # absent: untouched
    torch.testing.assert_close(loss_fn.bank[2], w * z2[y2 == 2].mean(0))  # first sight of 2
    assert loss_fn.seen_counts.tolist() == [5, 3, 2]


def test_bank_has_no_autograd_history_and_gets_no_gradient():
    loss_fn = RationaleInvarianceLoss(3, 4)
    z = torch.randn(6, 4, requires_grad=True)
    head = nn.Linear(4, 3)
    loss = loss_fn(z, head, torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    assert loss_fn.bank.grad_fn is None
    assert not loss_fn.bank.requires_grad
    assert loss_fn.bank.grad is None
    assert list(loss_fn.parameters()) == []


def test_loss_uses_the_post_update_bank():
    loss_fn = RationaleInvarianceLoss(2, 3, momentum=0.5)
    head = nn.Linear(3, 2)
    z = torch.randn(4, 3)
    y = torch.tensor([0, 0, 1, 1])
    loss_fn(z, head, y)
    z2 = torch.randn(4, 3)
    loss = loss_fn(z2, head, y)
    expected = naive_rationale_loss(z2, head.weight, y, loss_fn.bank)
    torch.testing.assert_close(loss, expected)


def test_reductions_against_hand_computation_on_two_class_toy_batch():
    # K = 2 classes, D = 2, samples: class 0 -> z = (1, 0), (3, 0); class 1 -> z = (0, 2).
    w = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 0, 1])
    # First sight: bank_0 = W * (2, 0) = [[2, 0], [0, 0]], bank_1 = W * (0, 2) = [[0, 4], [0, 2]].
    # Squared distances: sample 0: R = [[1, 0], [0, 0]] -> 1; sample 1: R = [[3, 0], [0, 0]] -> 1;
    # sample 2 equals its class mean -> 0. Total squared distance = 2.
    results = {}
    for reduction in REDUCTIONS:
        loss_fn = RationaleInvarianceLoss(2, 2, reduction=reduction)
        results[reduction] = loss_fn(z, w, y).item()
    assert results["official"] == pytest.approx(2 / (2 * 2))  # class 0: 2 / (K * n_0) ; class 1: 0
    assert results["paper"] == pytest.approx(2 / 3)  # total / N
    assert results["mse"] == pytest.approx(2 / (2 * 2 * 2))  # class 0: 2 / (K * n_0 * D)


def test_batch_mean_target_gives_within_class_variance_and_identical_samples_give_zero():
    loss_fn = RationaleInvarianceLoss(3, 5, momentum=1.0)
    head = nn.Linear(5, 3)
    z = torch.randn(8, 5, dtype=torch.float64)
    y = torch.zeros(8, dtype=torch.long)
    loss_fn.double()
    w = head.weight.detach().double()
    loss_fn(torch.randn(8, 5, dtype=torch.float64), w, y)  # initialise with other data
    loss = loss_fn(z, w, y)
    r = rationale(z, w)  # (K, N, D)
    variance = (r - r.mean(1, keepdim=True)).pow(2).sum(-1).mean()
    torch.testing.assert_close(loss, variance)
    same = z[:1].repeat(8, 1)
    fresh = RationaleInvarianceLoss(3, 5).double()
    assert fresh(same, w, y).item() == pytest.approx(0.0, abs=1e-12)


def test_eval_mode_leaves_the_bank_alone():
    loss_fn = RationaleInvarianceLoss(2, 3)
    loss_fn.eval()
    loss_fn(torch.randn(4, 3), nn.Linear(3, 2), torch.tensor([0, 1, 0, 1]))
    assert not loss_fn.initialised.any()
    assert torch.equal(loss_fn.bank, torch.zeros_like(loss_fn.bank))


def test_invariance_term_gives_no_gradient_to_the_bias():
    head = nn.Linear(4, 3)
    z = torch.randn(6, 4, requires_grad=True)
    loss_fn = RationaleInvarianceLoss(3, 4, momentum=0.5)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss_fn(torch.randn(6, 4), head, y)
    loss_fn(z, head, y).backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert head.bias.grad is None


@pytest.mark.parametrize(
    "variant, shape",
    [
        ("rationale", (3, 3, 4)),
        ("feature", (3, 4)),
        ("logit", (3, 3)),
        ("fixed_target", (3, 3, 4)),
        ("batch_target", (3, 3, 4)),
        ("zero_target", (3, 3, 4)),
    ],
)
def test_variants_bank_shapes_and_finite_loss(variant, shape):
    loss_fn = RationaleInvarianceLoss(3, 4, variant=variant)
    assert tuple(loss_fn.bank.shape) == shape
    z = torch.randn(6, 4, requires_grad=True)
    loss = loss_fn(z, nn.Linear(4, 3), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert torch.isfinite(loss)
    loss.backward()
    assert z.grad is not None


def test_target_ablations_follow_their_definitions():
    head = nn.Linear(4, 2)
    y = torch.tensor([0, 0, 1, 1])
    z1, z2 = torch.randn(4, 4), torch.randn(4, 4)
    fixed = RationaleInvarianceLoss(2, 4, momentum=0.3, variant="fixed_target")
    batch = RationaleInvarianceLoss(2, 4, momentum=0.3, variant="batch_target")
    zero = RationaleInvarianceLoss(2, 4, variant="zero_target")
    for loss_fn in (fixed, batch, zero):
        loss_fn(z1, head, y)
    first = fixed.bank.clone()
    for loss_fn in (fixed, batch):
        loss_fn(z2, head, y)
    torch.testing.assert_close(fixed.bank, first)  # m = 0: frozen at first sight
    torch.testing.assert_close(batch.bank[0], head.weight.detach() * z2[:2].mean(0))  # m = 1
    expected = naive_rationale_loss(z2, head.weight, y, None)
    torch.testing.assert_close(zero(z2, head, y), expected)  # target 0 = plain L2 on R


def test_feature_and_logit_invariance_match_hand_computation():
    head = nn.Linear(3, 2)
    z = torch.randn(4, 3)
    y = torch.tensor([0, 0, 1, 1])
    feature = RationaleInvarianceLoss(2, 3, variant="feature")
    logit = RationaleInvarianceLoss(2, 3, variant="logit")
    expected_f = sum((z[y == c] - z[y == c].mean(0)).pow(2).sum(1).mean() for c in (0, 1))
    logits = z @ head.weight.T
    expected_l = sum((logits[y == c] - logits[y == c].mean(0)).pow(2).sum(1).mean() for c in (0, 1))
    torch.testing.assert_close(feature(z, head, y), expected_f)
    torch.testing.assert_close(logit(z, head, y), expected_l)


@pytest.mark.parametrize("bank_dtype", ["bfloat16", "float16"])
def test_low_precision_bank_is_close_to_fp32(bank_dtype):
    torch.manual_seed(0)
    head = nn.Linear(16, 5)
    y = torch.arange(20) % 5
    ref = RationaleInvarianceLoss(5, 16, momentum=0.1)
    low = RationaleInvarianceLoss(5, 16, momentum=0.1, bank_dtype=bank_dtype)
    assert low.bank.dtype == getattr(torch, bank_dtype)
    assert low.bank_bytes() == ref.bank_bytes() // 2
    for _ in range(3):
        z = torch.randn(20, 16)
        a, b = ref(z, head, y), low(z, head, y)
    torch.testing.assert_close(b, a, rtol=2e-2, atol=1e-3)


def test_bfloat16_bank_keeps_tiny_updates_on_average():
    # m = 0.001 is below bf16's resolution (2^-8): round-to-nearest would freeze the bank.
    torch.manual_seed(0)
    loss_fn = RationaleInvarianceLoss(1, 4096, momentum=0.001, bank_dtype="bfloat16")
    w = torch.ones(1, 4096)
    y = torch.zeros(1, dtype=torch.long)
    loss_fn(torch.ones(1, 4096), w, y)  # bank = 1
    for _ in range(20):
        loss_fn(torch.full((1, 4096), 2.0), w, y)
    expected = 2 - 0.999**20  # about 1.0198
    assert loss_fn.bank.float().mean().item() == pytest.approx(expected, abs=2e-3)


def test_bad_inputs_raise_clear_errors():
    loss_fn = RationaleInvarianceLoss(3, 4)
    head = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"features must be \(N, 4\)"):
        loss_fn(torch.randn(5, 5), head, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must lie in"):
        loss_fn(torch.randn(2, 4), head, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="integer class ids"):
        loss_fn(torch.randn(2, 4), head, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="head weight must be"):
        loss_fn(torch.randn(2, 4), nn.Linear(4, 2), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="linear last layer"):
        loss_fn(torch.randn(2, 4), nn.Sequential(nn.Linear(4, 3)), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        RationaleInvarianceLoss(3, 4, reduction="sum")
    with pytest.raises(ValueError, match="variant must be one of"):
        RationaleInvarianceLoss(3, 4, variant="other")
    with pytest.raises(ValueError, match="momentum must be in"):
        RationaleInvarianceLoss(3, 4, momentum=0.999 + 1)


def test_rationale_regulariser_reduces_within_class_rationale_spread():
    """Tiny run: with alpha > 0 the per-class spread of rationales on held-out data is lower."""

    def run(alpha: float) -> float:
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
        head = nn.Linear(16, 2)
        loss_fn = RationaleInvarianceLoss(2, 16, momentum=0.1)
        opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=1e-2)

        def domain(n: int, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.randint(0, 2, (n,), generator=g)
            s = 2.0 * y - 1.0
            x = torch.randn(n, 6, generator=g)
            x[:, 0] += s  # invariant signal
            x[:, 1] += 2.0 * sign * s  # spurious, domain-specific
            return x, y

        train = [domain(64, 1.0), domain(64, 0.5)]
        for _ in range(150):
            x = torch.cat([d[0] for d in train])
            y = torch.cat([d[1] for d in train])
            z = net(x)
            loss = nn.functional.cross_entropy(head(z), y) + alpha * loss_fn(z, head, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        x, y = domain(400, -1.0)
        with torch.no_grad():
            r = rationale(net(x), head.weight)
            return sum(
                (r[:, y == c] - r[:, y == c].mean(1, keepdim=True)).pow(2).sum(-1).mean().item()
                for c in (0, 1)
            )

    assert run(1.0) < 0.8 * run(0.0)


def test_min_class_count_leaves_rare_classes_out_of_the_loss():
    z, w, y, bank = _batch(n=10, k=3, seed=5)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 1])  # class 2 appears once
    keep = y != 2
    full = closed_form_rationale_loss(z, w, y, bank, min_class_count=2)
    torch.testing.assert_close(full, naive_rationale_loss(z, w, y, bank, min_class_count=2))
    torch.testing.assert_close(full, naive_rationale_loss(z[keep], w, y[keep], bank))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("min_class_count", [1, 3])
def test_global_class_counts_make_the_loss_additive_over_batch_shares(reduction, min_class_count):
    # what data-parallel training relies on: shares weighted by the global counts sum to the loss
    g = torch.Generator().manual_seed(0)
    z, weight, bank = torch.randn(10, 4, generator=g), torch.randn(3, 4), torch.randn(3, 3, 4)
    y = torch.tensor([0, 0, 1, 2, 1, 0, 2, 2, 1, 0])
    counts = torch.bincount(y, minlength=3)
    shares = (slice(0, 6), slice(6, 10))  # unequal shares
    for loss_fn in (closed_form_rationale_loss, naive_rationale_loss):
        full = loss_fn(z, weight, y, bank, reduction, min_class_count=min_class_count)
        parts = [
            loss_fn(
                z[s],
                weight,
                y[s],
                bank,
                reduction,
                min_class_count=min_class_count,
                class_counts=counts,
            )
            for s in shares
        ]
        torch.testing.assert_close(parts[0] + parts[1], full)
