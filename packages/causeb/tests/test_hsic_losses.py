import pytest
import torch
import torch.nn.functional as F
from causeb.losses import consistency_loss, dissimilarity, hsic, hsic_closed_form, independence_loss


def _hand_hsic(x, y):
    x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    m = x.shape[0]
    h = torch.eye(m, dtype=x.dtype) - torch.ones(m, m, dtype=x.dtype) / m
    return torch.trace(y @ y.T @ h @ x @ x.T @ h) / (m - 1) ** 2


def test_hsic_matches_hand_computation_and_closed_form():
    x, y = torch.randn(9, 5, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    torch.testing.assert_close(hsic(x, y), _hand_hsic(x, y))
    torch.testing.assert_close(hsic(x, y), hsic_closed_form(x, y))
    torch.testing.assert_close(hsic(x, y, normalize=False), hsic_closed_form(x, y, normalize=False))


def test_hsic_is_non_negative():
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        assert hsic(torch.randn(6, 4, generator=g), torch.randn(6, 7, generator=g)) >= 0


def test_hsic_is_zero_for_independent_constructions_and_positive_for_dependent_ones():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, generator=g) + 3.0
    independent = torch.randn(4000, 3, generator=g) + 3.0
    constant = torch.ones(4000, 3)
    dependent = x + 0.1 * torch.randn(4000, 3, generator=g)
    # m = 4000: the trace form would need 4000 x 4000 products; the closed form is equal (above).
    assert hsic_closed_form(x, constant) < 1e-10
    assert hsic_closed_form(x, independent) < 1e-4
    assert hsic_closed_form(x, dependent) > 100 * hsic_closed_form(x, independent)
    small = slice(0, 300)
    assert hsic(x[small], dependent[small]) > 10 * hsic(x[small], independent[small])


def test_hsic_is_invariant_to_a_constant_offset_without_normalisation():
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    torch.testing.assert_close(hsic(x, y, normalize=False), hsic(x + 5.0, y - 2.0, normalize=False))


def test_hsic_gradient_reaches_only_the_undetached_side():
    x = torch.randn(8, 4, requires_grad=True)
    y = torch.randn(8, 4, requires_grad=True)
    hsic(x, y.detach()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is None


def test_hsic_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="same m"):
        hsic(torch.randn(4, 3), torch.randn(5, 3))


def test_dissimilarity_is_max_minus_mean():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = torch.zeros(3, 2)
    # per-sample distances e = [0, 1, 2]
    torch.testing.assert_close(dissimilarity(a, b), torch.tensor(2.0 - 1.0))


def test_dissimilarity_is_zero_when_distances_are_equal_and_never_negative():
    a = torch.randn(5, 3)
    assert dissimilarity(a, a + 0.7) == pytest.approx(0.0, abs=1e-6)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        assert dissimilarity(torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)) >= 0


def test_dissimilarity_hinge_variant():
    a, b = torch.zeros(4, 2), torch.ones(4, 2)  # mean distance 1
    assert dissimilarity(a, b, margin=3.0).item() == pytest.approx(2.0)
    assert dissimilarity(a, b, margin=0.5).item() == 0.0


def test_consistency_loss_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    zc, zc2, zd, zd2 = (torch.randn(6, 4, generator=g) for _ in range(4))
    projector = torch.nn.Linear(4, 4)
    expected = (
        F.mse_loss(zc, projector(zc2))
        + F.mse_loss(zc2, projector(zc))
        + dissimilarity(zd, projector(zd2))
        + dissimilarity(zd2, projector(zd))
    )
    torch.testing.assert_close(consistency_loss((zc, zc2), (zd, zd2), projector), expected)


def test_independence_loss_sums_four_pairs_and_stops_domain_gradients():
    zc, zc2 = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4, requires_grad=True)
    zd, zd2 = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3, requires_grad=True)
    loss = independence_loss((zc, zc2), (zd, zd2))
    expected = sum(hsic(a, b) for a in (zc, zc2) for b in (zd, zd2))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert zc.grad.abs().sum() > 0 and zc2.grad.abs().sum() > 0
    assert zd.grad is None and zd2.grad is None
