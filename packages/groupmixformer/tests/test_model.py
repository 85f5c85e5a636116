"""Shapes, parameter counts, state-dict schema, FLOPs, invariants and bad input."""

from __future__ import annotations

import pytest
import torch
from groupmixformer import EXPECTED, VARIANTS, GroupMixFormer, factorized_attention
from groupmixformer.info import model_flops
from torch import nn

TINY = {"embed_dims": (40, 40, 40, 40), "depths": (1, 1, 1, 1), "num_classes": 4}


def _meta_model(name: str) -> GroupMixFormer:
    with torch.device("meta"):
        return GroupMixFormer.from_config(VARIANTS[name])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_parameter_count_and_key_count_match_release(name):
    model = _meta_model(name)
    params, _, keys = EXPECTED[name]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == params
    assert len(model.state_dict()) == keys


def test_golden_keys_of_small_stage0_block0():
    state = _meta_model("small").state_dict()
    prefix = "groupmixformer_backbone.0.gma_stage.0."
    block = {k[len(prefix) :]: tuple(v.shape) for k, v in state.items() if k.startswith(prefix)}

    def bn(name, c):
        return {f"{name}.{s}": (c,) for s in ("weight", "bias", "running_mean", "running_var")} | {
            f"{name}.num_batches_tracked": ()
        }

    golden = {
        "cpe.proj.weight": (80, 1, 3, 3),
        "cpe.proj.bias": (80,),
        "norm1.weight": (80,),
        "norm1.bias": (80,),
        "norm2.weight": (80,),
        "norm2.bias": (80,),
        "att.qkv.weight": (240, 80),
        "att.qkv.bias": (240,),
        "att.proj.weight": (80, 80),
        "att.proj.bias": (80,),
        "att.aggregator.agg1.conv1.weight": (16, 1, 3, 3),
        "att.aggregator.agg1.pointwise_conv.weight": (16, 16, 1, 1),
        "att.aggregator.agg2.conv1.weight": (16, 1, 5, 5),
        "att.aggregator.agg2.pointwise_conv.weight": (16, 16, 1, 1),
        "att.aggregator.agg3.conv1.weight": (16, 1, 7, 7),
        "att.aggregator.agg3.pointwise_conv.weight": (16, 16, 1, 1),
        "att.aggregator.agg0.conv.conv1.weight": (48, 1, 3, 3),
        "att.aggregator.agg0.conv.pointwise_conv.weight": (16, 48, 1, 1),
        "att.aggregator.agg0.norm.weight": (16,),
        "att.aggregator.agg0.norm.bias": (16,),
        "att.crpe.conv_list.0.weight": (16, 1, 3, 3),
        "att.crpe.conv_list.0.bias": (16,),
        "att.crpe.conv_list.1.weight": (24, 1, 5, 5),
        "att.crpe.conv_list.1.bias": (24,),
        "att.crpe.conv_list.2.weight": (24, 1, 7, 7),
        "att.crpe.conv_list.2.bias": (24,),
        "mlp.fc1.weight": (320, 80),
        "mlp.fc1.bias": (320,),
        "mlp.fc2.weight": (80, 320),
        "mlp.fc2.bias": (80,),
    }
    for i in range(4):
        golden |= bn(f"att.aggregator.norm{i}", 16)
    assert block == golden
    assert len(block) == 50
    outside = [k for k in state if not k.startswith("groupmixformer_backbone.")]
    assert len(outside) == 49


def test_miny_flops_at_224_match_fvcore_figure():
    assert model_flops(VARIANTS["miny"], 224) / 1e9 == pytest.approx(1.350, abs=0.001)


def test_tiny_config_shape_and_param_count(tiny_model):
    assert sum(p.numel() for p in tiny_model.parameters()) == 106_148
    assert tiny_model(torch.randn(2, 3, 64, 64)).shape == (2, 4)


def test_stage_features_have_strides_4_8_16_32(tiny_model):
    maps = tiny_model.forward_stages(torch.randn(1, 3, 128, 96))
    assert [m.shape[1:] for m in maps] == [(40, 32, 24), (40, 16, 12), (40, 8, 6), (40, 4, 3)]


@pytest.mark.parametrize("size", [(224, 320), (223, 223), (48, 48), (200, 200)])
def test_odd_and_non_square_sizes_run(tiny_model, size):
    tiny_model.eval()
    with torch.no_grad():
        assert tiny_model(torch.randn(1, 3, *size)).shape == (1, 4)


def test_in_chans_and_num_classes_are_configurable():
    model = GroupMixFormer(**{**TINY, "num_classes": 10}, in_chans=1).eval()
    assert model(torch.randn(2, 1, 48, 48)).shape == (2, 10)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_eval_output_of_a_sample_is_independent_of_the_batch(tiny_model, fused):
    tiny_model.eval()
    tiny_model.set_fused_eval(fused)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        together = tiny_model(x)
        alone = tiny_model(x[:1])
    torch.testing.assert_close(together[:1], alone, rtol=1e-5, atol=1e-5)


def test_train_output_depends_on_the_batch(tiny_model):
    tiny_model.train()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        together = tiny_model(x)
        pair = tiny_model(x[:2])
    assert not torch.allclose(together[:2], pair, atol=1e-4)


def test_key_softmax_sums_to_one_over_tokens():
    q = torch.randn(2, 8, 50, 4, dtype=torch.float64)
    k = torch.randn(2, 8, 50, 4, dtype=torch.float64) * 3
    v = torch.ones(2, 8, 50, 4, dtype=torch.float64)
    # softmax_N(k)^T 1 = (column sums of the softmax) = 1 for every entry of the d x d context
    out = factorized_attention(q, k, v, scale=0.5)
    torch.testing.assert_close(out, 0.5 * q.sum(-1, keepdim=True).expand_as(q))


def test_every_parameter_gets_a_finite_gradient(tiny_model):
    tiny_model.train()
    tiny_model(torch.randn(2, 3, 64, 64)).logsumexp(-1).sum().backward()
    for name, param in tiny_model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_drop_path_is_stochastic_in_train_and_off_in_eval():
    torch.manual_seed(0)
    model = GroupMixFormer(**TINY, drop_path_rate=0.5)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.track_running_stats = False  # isolate DropPath from BN updates
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


def test_fused_eval_path_matches_reference_path(tiny_model):
    tiny_model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fused = tiny_model(x)
        tiny_model.set_fused_eval(False)
        reference = tiny_model(x)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)


def test_zeroing_group_aggregators_changes_the_output(tiny_model):
    attention = tiny_model.groupmixformer_backbone[0].gma_stage[0].att.eval()
    x = torch.randn(2, 16 * 16, 40)
    with torch.no_grad():
        attention.qkv.weight.normal_(0, 0.3)  # trained-scale q/k/v, not the 0.02 init
        before = attention(x, (16, 16))
        for name, param in attention.named_parameters():
            if any(f"aggregator.agg{i}." in name for i in (1, 2, 3)):
                param.zero_()
        after = attention(x, (16, 16))
    assert (before - after).abs().max() > 0.05 * before.abs().max()


def test_grad_checkpointing_gives_the_same_output(tiny_model):
    tiny_model.eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    plain = tiny_model(x)
    tiny_model.set_grad_checkpointing(True)
    torch.testing.assert_close(tiny_model(x), plain)


@pytest.mark.parametrize(
    "shape", [(2, 1, 64, 64), (2, 3, 64), (3, 64, 64)], ids=["channels", "3d", "unbatched"]
)
def test_bad_input_shape_raises_clear_error(tiny_model, shape):
    with pytest.raises(ValueError, match="expected images"):
        tiny_model(torch.randn(*shape))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embed_dims": (40, 40, 45, 40)}, "multiple of 10"),
        ({"depths": (1, 1, 1)}, "4 entries"),
        ({"num_heads": 4}, "num_heads must be 8"),
        ({"drop_path_rate": 1.0}, "drop_path_rate"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GroupMixFormer(**{**TINY, **kwargs})


def test_reset_classifier_and_forward_head(tiny_model):
    tiny_model.reset_classifier(0)
    feats = tiny_model.forward_features(torch.randn(2, 3, 64, 64))
    assert feats.shape == (2, 40, 2, 2)
    assert tiny_model.forward_head(feats).shape == (2, 40)
    tiny_model.reset_classifier(3)
    assert tiny_model.forward_head(feats).shape == (2, 3)
    assert tiny_model.forward_head(feats, pre_logits=True).shape == (2, 40)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_all_variant_flops_at_224_match_fvcore(name):
    expected = EXPECTED[name][1] * 1e9
    assert model_flops(VARIANTS[name], 224) == pytest.approx(
        expected, rel=0.015
    )  # norms: 0.3-1.3 %


def test_fused_path_follows_in_place_weight_updates(tiny_model):
    attention = tiny_model.groupmixformer_backbone[0].gma_stage[0].att.eval()
    x = torch.randn(2, 16 * 16, 40)
    with torch.inference_mode():
        attention.qkv.weight.normal_(0, 0.3)
        first = attention(x, (16, 16))
        attention.aggregator.norm2.running_var.mul_(3.0)
        fused = attention(x, (16, 16))
        attention.use_fused_eval = False
        reference = attention(x, (16, 16))
    assert (first - fused).abs().max() > 1e-3
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_fused_path_matches_reference_on_a_non_square_grid(qkv_bias):
    torch.manual_seed(0)
    model = GroupMixFormer(**TINY, qkv_bias=qkv_bias).eval()
    for module in model.modules():  # non-trivial BN statistics, so the folding is exercised
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.3)
            module.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        fused = model(x)
        model.set_fused_eval(False)
        reference = model(x)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)


def test_eval_with_gradients_uses_the_differentiable_path(tiny_model):
    """The fused path is inference-only; eval mode with autograd on must still backpropagate."""
    tiny_model.eval()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    with torch.no_grad():
        expected = tiny_model(x)
    out = tiny_model(x)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    torch.testing.assert_close(out.detach(), expected, rtol=1e-5, atol=1e-5)


def test_fused_path_works_for_a_model_built_in_inference_mode():
    with torch.inference_mode():  # inference tensors, e.g. a model loaded for serving
        torch.manual_seed(0)
        model = GroupMixFormer(**TINY).eval()
        x = torch.randn(1, 3, 64, 64)
        fused = model(x)
        model.set_fused_eval(False)
        torch.testing.assert_close(fused, model(x), rtol=1e-5, atol=1e-5)
