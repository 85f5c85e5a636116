import pytest
import torch
from dyt.losses import DyTLoss, distillation_kl, pixel_distillation_kl, rate_loss


def test_rate_term_equals_alpha_times_squared_gap():
    masks = torch.zeros(2, 3, 4, 1)
    masks[0, :, :3] = 1.0  # mean = 9 / 24
    assert torch.isclose(
        rate_loss(masks, rate=0.5, alpha=2.0), torch.tensor(2.0 * (9 / 24 - 0.5) ** 2)
    )


def test_kl_is_zero_when_student_equals_teacher():
    logits = torch.randn(5, 7)
    assert distillation_kl(logits, logits.clone()).abs() < 1e-6
    assert distillation_kl(logits, torch.randn(5, 7)) > 0


def test_kl_matches_hand_formula():
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    p_t = teacher.softmax(-1)
    expected = (p_t * (p_t.log() - student.log_softmax(-1))).sum(-1).mean()
    torch.testing.assert_close(distillation_kl(student, teacher), expected)


def test_teacher_is_detached_in_kl_but_complete_ce_has_gradients():
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 0])
    masks = torch.ones(4, 2, 5, 1)
    loss = DyTLoss(rate=0.5)
    out = loss(student, targets, masks, teacher)
    out.kl.backward(retain_graph=True)
    assert teacher.grad is None and student.grad is not None
    out.complete_ce.backward()
    assert teacher.grad is not None and teacher.grad.abs().sum() > 0


def test_total_is_sum_of_terms_and_complete_is_optional():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    targets = torch.tensor([0, 1, 2, 0])
    masks = (torch.rand(4, 2, 5, 1) > 0.5).float()
    out = DyTLoss(rate=0.25, alpha=2.0)(student, targets, masks, teacher)
    torch.testing.assert_close(out.total, out.ce + out.complete_ce + out.kl + out.rate)
    torch.testing.assert_close(out.ce, torch.nn.functional.cross_entropy(student, targets))
    plain = DyTLoss(rate=0.25)(student, targets, masks)
    assert plain.kl == 0 and plain.complete_ce == 0
    torch.testing.assert_close(plain.total, plain.ce + plain.rate)


def test_per_sample_rate_option_differs_from_global():
    masks = torch.zeros(2, 1, 4, 1)
    masks[0] = 1.0  # sample rates 1 and 0: global mean 0.5
    assert rate_loss(masks, rate=0.5) == 0
    assert torch.isclose(rate_loss(masks, rate=0.5, per_sample=True), torch.tensor(2.0 * 0.25))


def test_pixel_kl_is_per_pixel_kl_averaged_and_detaches_teacher():
    student = torch.randn(2, 4, 3, 5, requires_grad=True)
    teacher = torch.randn(2, 4, 3, 5, requires_grad=True)
    p_t = teacher.detach().softmax(1)
    expected = (p_t * (p_t.log() - student.detach().log_softmax(1))).sum(1).mean()
    kl = pixel_distillation_kl(student, teacher)
    torch.testing.assert_close(kl.detach(), expected)
    kl.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    assert pixel_distillation_kl(student.detach(), student.detach()).abs() < 1e-6
    with pytest.raises(ValueError, match="B, K, H, W"):
        pixel_distillation_kl(torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 4))
