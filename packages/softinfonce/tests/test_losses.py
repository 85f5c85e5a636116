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
