import pytest
import torch
from dyt.models.layers import (
    Adapter,
    MoEAdapter,
    TokenDispatcher,
    gumbel_sigmoid_mask,
    sample_logistic_noise,
)


def test_adapter_outputs_zero_at_init():
    adapter = Adapter(16, 4)
    out = adapter(torch.randn(2, 5, 16))
    assert torch.equal(out, torch.zeros_like(out))


def test_adapter_matches_hand_computation_in_eval():
    torch.manual_seed(0)
    adapter = Adapter(6, 3, scale=0.1).eval()
    torch.nn.init.normal_(adapter.up_proj.weight)
    x = torch.randn(4, 6)
    hidden = torch.relu(x @ adapter.down_proj.weight.T + adapter.down_proj.bias)
    expected = 0.1 * (hidden @ adapter.up_proj.weight.T + adapter.up_proj.bias)
    torch.testing.assert_close(adapter(x), expected)


def test_adapter_dropout_only_in_training():
    torch.manual_seed(0)
    adapter = Adapter(8, 64, dropout=0.5)
    torch.nn.init.normal_(adapter.up_proj.weight)
    x = torch.randn(3, 8)
    adapter.eval()
    assert torch.equal(adapter(x), adapter(x))
    adapter.train()
    assert not torch.equal(adapter(x), adapter(x))


def test_learnable_scale_is_a_parameter():
    adapter = Adapter(8, 2, scale="learnable")
    assert "scale" in dict(adapter.named_parameters())


def test_moe_with_one_expert_equals_plain_adapter():
    torch.manual_seed(0)
    moe = MoEAdapter(12, 4, num_experts=1, scale=0.5).eval()
    torch.nn.init.normal_(moe.up_weight)
    torch.nn.init.normal_(moe.up_bias)
    plain = Adapter(12, 4, scale=0.5).eval()
    with torch.no_grad():
        plain.down_proj.weight.copy_(moe.down_weight[0])
        plain.down_proj.bias.copy_(moe.down_bias[0])
        plain.up_proj.weight.copy_(moe.up_weight[0])
        plain.up_proj.bias.copy_(moe.up_bias[0])
    x = torch.randn(3, 7, 12)
    torch.testing.assert_close(moe(x), plain(x))


def test_moe_routing_sums_to_one_and_starts_uniform():
    moe = MoEAdapter(12, 4, num_experts=4)
    x = torch.randn(3, 7, 12)
    alpha = moe.routing_weights(x)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))
    torch.testing.assert_close(alpha, torch.full((3, 4), 0.25))
    torch.nn.init.normal_(moe.router.weight)
    alpha = moe.routing_weights(x)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))
    assert not torch.allclose(alpha, torch.full((3, 4), 0.25))


def test_moe_merges_weights_per_image():
    torch.manual_seed(0)
    moe = MoEAdapter(6, 3, num_experts=2).eval()
    for p in moe.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 5, 6)
    alpha = moe.routing_weights(x)
    for b in range(2):
        w_down = (alpha[b, :, None, None] * moe.down_weight).sum(0)
        b_down = (alpha[b, :, None] * moe.down_bias).sum(0)
        w_up = (alpha[b, :, None, None] * moe.up_weight).sum(0)
        b_up = (alpha[b, :, None] * moe.up_bias).sum(0)
        expected = torch.relu(x[b] @ w_down.T + b_down) @ w_up.T + b_up
        torch.testing.assert_close(moe(x)[b], expected, rtol=1e-4, atol=1e-5)


def test_moe_rejects_wrong_rank():
    with pytest.raises(ValueError, match="B, T, C"):
        MoEAdapter(6, 3, num_experts=2)(torch.randn(5, 6))


def test_straight_through_mask_is_binary_and_passes_gradients():
    logits = torch.randn(4, 10, 1, requires_grad=True)
    mask = gumbel_sigmoid_mask(logits, tau=5.0)
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    mask.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_tau_does_not_change_hard_decisions():
    logits = torch.randn(8, 50, 1)
    noise = sample_logistic_noise(logits)
    hard_1 = gumbel_sigmoid_mask(logits, tau=1.0, noise=noise).detach()
    hard_5 = gumbel_sigmoid_mask(logits, tau=5.0, noise=noise).detach()
    assert torch.equal(hard_1, hard_5)
    assert torch.equal(hard_1, (logits + noise > 0).float())


def test_dispatcher_eval_is_deterministic_threshold():
    torch.manual_seed(0)
    td = TokenDispatcher(16).eval()
    torch.nn.init.normal_(td.mlp_head.weight)
    x = torch.randn(2, 9, 16)
    mask_a, logits = td(x)
    mask_b, _ = td(x)
    assert torch.equal(mask_a, mask_b)
    assert torch.equal(mask_a, (logits > 0).float())


def test_dispatcher_init_matches_vit_linear_init():
    td = TokenDispatcher(768)
    assert td.mlp_head.weight.shape == (1, 768) and td.mlp_head.bias.shape == (1,)
    assert torch.all(td.mlp_head.bias == 0)
    assert 0.01 < td.mlp_head.weight.std() < 0.03
