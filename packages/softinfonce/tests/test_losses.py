from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from softinfonce.losses import (
    SoftInfoNCELoss,
    partial_pair_weights,
    soft_info_nce,
    soft_target_cross_entropy,
    soft_targets,
)


def _views(n: int, dim: int = 16, speeds: tuple[float, float] = (1.0, 2.0), grad: bool = False):
    zv = torch.randn(2 * n, dim, requires_grad=grad)
    za = torch.randn(2 * n, dim, requires_grad=grad)
    clip_ids = torch.arange(n).repeat(2)
    view_ids = torch.arange(2).repeat_interleave(n)
    sp = torch.tensor([speeds[0]] * n + [speeds[1]] * n)
    return zv, za, clip_ids, view_ids, sp


def test_one_view_per_clip_is_symmetric_infonce() -> None:  # (a)
    n, tau = 6, 0.07
    zv, za = torch.randn(n, 8), torch.randn(n, 8)
    out = soft_info_nce(
        zv, za, torch.arange(n), torch.zeros(n, dtype=torch.long), torch.ones(n), temperature=tau
    )
    logits = F.normalize(zv, dim=1) @ F.normalize(za, dim=1).T / tau
    expected = 0.5 * (
        F.cross_entropy(logits, torch.arange(n)) + F.cross_entropy(logits.T, torch.arange(n))
    )
    torch.testing.assert_close(out.loss, expected, atol=1e-6, rtol=0)


def test_each_row_has_2n_minus_2_strict_negatives() -> None:  # (b)
    n = 5
    _, _, clip_ids, view_ids, _ = _views(n)
    targets, positive, partial = soft_targets(
        clip_ids, view_ids, clip_ids, view_ids, torch.full((2 * n, 2 * n), 0.3)
    )
    negatives = ~(positive | partial)
    assert negatives.sum(1).tolist() == [2 * n - 2] * (2 * n)
    assert positive.sum(1).eq(1).all() and partial.sum(1).eq(1).all()
    torch.testing.assert_close(targets.sum(1), torch.full((2 * n,), 1.3))


def test_zero_weight_is_infonce_over_2n_candidates() -> None:  # (c)
    n, tau = 4, 0.1
    zv, za, clip_ids, view_ids, sp = _views(n)
    out = soft_info_nce(zv, za, clip_ids, view_ids, sp, temperature=tau, weight_mode="zero")
    logits = F.normalize(zv, dim=1) @ F.normalize(za, dim=1).T / tau
    target = torch.arange(2 * n)
    expected = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    torch.testing.assert_close(out.loss, expected, atol=1e-6, rtol=0)
    assert out.num_candidates == 2 * n


def test_gradients_are_finite_and_weights_get_none() -> None:  # (d)
    zv, za, clip_ids, view_ids, sp = _views(4, grad=True)
    out = soft_info_nce(zv, za, clip_ids, view_ids, sp, weight_mode="feature")
    out.loss.backward()
    assert torch.isfinite(zv.grad).all() and torch.isfinite(za.grad).all()
    w = partial_pair_weights("feature", za, za, sp, sp)
    assert not w.requires_grad and w.grad_fn is None


def test_feature_weights_do_not_change_the_gradient_path() -> None:  # (d) stop-gradient
    zv, za, clip_ids, view_ids, sp = _views(4, grad=True)
    w = partial_pair_weights("feature", za, za, sp, sp)
    logits = F.normalize(zv, dim=1) @ F.normalize(za, dim=1).T / 0.07
    t_v2a, _, _ = soft_targets(clip_ids, view_ids, clip_ids, view_ids, w)
    t_a2v, _, _ = soft_targets(
        clip_ids, view_ids, clip_ids, view_ids, partial_pair_weights("feature", zv, zv, sp, sp)
    )
    manual = 0.5 * (
        soft_target_cross_entropy(logits, t_v2a) + soft_target_cross_entropy(logits.T, t_a2v)
    )
    grad_manual = torch.autograd.grad(manual, za)[0]
    grad_ours = torch.autograd.grad(soft_info_nce(zv, za, clip_ids, view_ids, sp).loss, za)[0]
    torch.testing.assert_close(grad_ours, grad_manual)


def test_loss_is_invariant_to_permuting_clips() -> None:  # (e)
    n = 6
    zv, za, clip_ids, view_ids, sp = _views(n, speeds=(1.0, 3.0))
    base = soft_info_nce(zv, za, clip_ids, view_ids, sp).loss
    perm = torch.randperm(n)
    order = torch.cat([perm, perm + n])
    permuted = soft_info_nce(zv[order], za[order], clip_ids[order], view_ids[order], sp[order]).loss
    torch.testing.assert_close(base, permuted)
    shuffle = torch.randperm(2 * n)  # any row order, ids carried along
    shuffled = soft_info_nce(
        zv[shuffle], za[shuffle], clip_ids[shuffle], view_ids[shuffle], sp[shuffle]
    ).loss
    torch.testing.assert_close(base, shuffled)


def test_soft_target_ce_reproduces_snclr() -> None:  # (f)
    torch.manual_seed(1)
    b, q, k, tau = 5, 12, 3, 0.1
    query = F.normalize(torch.randn(b, 8), dim=1)
    keys = F.normalize(torch.randn(q, 8), dim=1)
    logits = query @ keys.T / tau
    positives = torch.arange(b)
    neighbour_idx = torch.stack([torch.randperm(q - b)[:k] + b for _ in range(b)])
    attention = torch.softmax(torch.randn(b, k), dim=1)
    # SNCLR: -(2 tau) [ log p(positive) + sum_k att_k log p(neighbour_k) ], averaged over queries.
    log_p = F.log_softmax(logits, dim=1)
    snclr = -(2 * tau) * (
        log_p[torch.arange(b), positives] + (attention * log_p.gather(1, neighbour_idx)).sum(1)
    )
    targets = torch.zeros(b, q)
    targets[torch.arange(b), positives] = 1.0
    targets.scatter_(1, neighbour_idx, attention)
    torch.testing.assert_close(
        soft_target_cross_entropy(logits, targets, scale=2 * tau), snclr.mean()
    )


def test_ratio_mode_gives_half_for_speed_two() -> None:  # (g)
    _, _, clip_ids, view_ids, sp = _views(3, speeds=(1.0, 2.0))
    w = partial_pair_weights("ratio", torch.empty(6, 1), torch.empty(6, 1), sp, sp)
    targets, _, partial = soft_targets(clip_ids, view_ids, clip_ids, view_ids, w)
    assert torch.all(targets[partial] == 0.5)


def test_feature_mode_uses_the_clip_s_other_audio_view() -> None:
    zv, za, clip_ids, view_ids, sp = _views(3)
    w = partial_pair_weights("feature", za, za, sp, sp)
    expected = F.cosine_similarity(za[0], za[3], dim=0).clamp(min=0)
    torch.testing.assert_close(w[0, 3], expected)


def test_const_mode_and_normalized_targets() -> None:
    _, _, clip_ids, view_ids, sp = _views(2)
    w = partial_pair_weights("const", torch.empty(4, 1), torch.empty(4, 1), sp, sp, const=0.25)
    targets, _, _ = soft_targets(clip_ids, view_ids, clip_ids, view_ids, w, normalize=True)
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
    assert targets.max() == pytest.approx(0.8)


def test_soft_targets_raise_the_loss_floor() -> None:
    zv, za, clip_ids, view_ids, sp = _views(4)
    zero = soft_info_nce(zv, za, clip_ids, view_ids, sp, weight_mode="zero").loss
    const = soft_info_nce(
        zv, za, clip_ids, view_ids, sp, weight_mode="const", const_weight=1.0
    ).loss
    assert const > zero


def test_learnable_temperature_receives_a_gradient() -> None:
    loss_fn = SoftInfoNCELoss(learnable_temperature=True)
    zv, za, clip_ids, view_ids, sp = _views(3)
    loss_fn(zv, za, clip_ids, view_ids, sp).loss.backward()
    assert loss_fn.log_inv_temperature.grad is not None


def test_bad_inputs_raise() -> None:
    zv, za, clip_ids, view_ids, sp = _views(3)
    with pytest.raises(ValueError, match="clip_ids"):
        soft_info_nce(zv, za, clip_ids[:-1], view_ids, sp)
    with pytest.raises(ValueError, match="weight_mode"):
        soft_info_nce(zv, za, clip_ids, view_ids, sp, weight_mode="soft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same shape"):
        soft_target_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))


def _reference_loss(zv, za, clip_ids, view_ids, speeds, tau: float) -> torch.Tensor:
    """SoftInfoNCE with "ratio" weights written out in plain float64 loops."""
    zv = F.normalize(zv.double(), dim=1)
    za = F.normalize(za.double(), dim=1)
    total = torch.zeros((), dtype=torch.float64)
    for anchors, candidates in ((zv, za), (za, zv)):
        logits = anchors @ candidates.T / tau
        log_p = logits.log_softmax(dim=1)
        for i in range(len(clip_ids)):
            for j in range(len(clip_ids)):
                if clip_ids[i] != clip_ids[j]:
                    continue
                s_i, s_j = float(speeds[i]), float(speeds[j])
                target = 1.0 if view_ids[i] == view_ids[j] else min(s_i, s_j) / max(s_i, s_j)
                total = total - target * log_p[i, j]
    return total / (2 * len(clip_ids))


@pytest.mark.parametrize("mode", ["feature", "ratio", "const", "zero"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_loss_follows_the_embedding_dtype(mode: str, dtype: torch.dtype) -> None:
    zv, za, clip_ids, view_ids, sp = _views(4, speeds=(1.0, 3.0))
    loss_fn = SoftInfoNCELoss(temperature=0.1, weight_mode=mode, learnable_temperature=True)
    out = loss_fn(zv.to(dtype), za.to(dtype), clip_ids, view_ids, sp)  # speeds stay float32
    assert out.loss.dtype == dtype
    reference = loss_fn(zv, za, clip_ids, view_ids, sp).loss
    tolerance = 1e-5 if dtype == torch.float64 else 0.05 * float(reference.detach())
    assert abs(float(out.loss.detach()) - float(reference.detach())) < tolerance


def test_float64_loss_matches_a_float64_reference_to_1e12() -> None:
    """Weights, targets and temperature built in float32 would cost about 1e-7 here."""
    zv, za, clip_ids, view_ids, sp = _views(5, speeds=(1.0, 3.0))
    zv, za = zv.double(), za.double()
    out = soft_info_nce(zv, za, clip_ids, view_ids, sp, temperature=0.07, weight_mode="ratio")
    expected = _reference_loss(zv, za, clip_ids, view_ids, sp, 0.07)
    assert abs(float(out.loss) - float(expected)) < 1e-12
    module = SoftInfoNCELoss(temperature=0.07, weight_mode="ratio")
    module_loss = module(zv, za, clip_ids, view_ids, sp).loss.detach()
    # The module stores log(1/tau) in float32; the temperature is cast to float64 before use,
    # so the only error is float32's rounding of tau itself.
    assert module_loss.dtype == torch.float64
    assert abs(float(module_loss) - float(expected)) < 1e-5


def test_weights_take_the_embedding_dtype_and_device() -> None:
    emb = torch.randn(6, 4, dtype=torch.float64)
    speeds = torch.tensor([1.0, 1.0, 1.0, 2.0, 3.0, 4.0])  # float32
    for mode in ("feature", "ratio", "const", "zero"):
        w = partial_pair_weights(mode, emb, emb, speeds, speeds)  # type: ignore[arg-type]
        assert w.dtype == torch.float64 and w.device == emb.device and w.shape == (6, 6)
    ratio = partial_pair_weights("ratio", emb, emb, speeds, speeds)
    assert float(ratio[0, 4]) == 1 / 3  # exact in float64, not float32's 0.33333334


def test_mixed_embedding_dtypes_are_refused() -> None:
    zv, za, clip_ids, view_ids, sp = _views(2)
    with pytest.raises(ValueError, match="dtype"):
        soft_info_nce(zv.double(), za, clip_ids, view_ids, sp)
