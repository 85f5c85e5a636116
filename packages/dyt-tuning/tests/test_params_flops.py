import dyt
import pytest
import timm
import torch
from dyt.flops import VIT_BASE, VIT_LARGE, ViTDims, dyt_flops, eval_flops

from papers_shared.counting import count_flops, count_parameters


def _extra_params(model: torch.nn.Module, key: str) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if key in n)


def _meta_vit(name: str, **config) -> torch.nn.Module:
    with torch.device("meta"):
        vit = timm.create_model(name, pretrained=False, num_classes=100)
    return dyt.convert_vit(vit, **config)


@pytest.mark.parametrize("bottleneck, adapters", [(8, 156_768), (64, 1_189_632)])
def test_vit_base_extra_parameter_counts(bottleneck, adapters):
    model = _meta_vit("vit_base_patch16_224", bottleneck=bottleneck)
    assert _extra_params(model, "adaptmlp") == adapters
    assert _extra_params(model, "mlp_token_select") == 9_228
    trainable = count_parameters(model).trainable
    assert trainable == adapters + 9_228 + 768 * 100 + 100


def test_vit_large_extra_parameter_count():
    model = _meta_vit("vit_large_patch16_224", bottleneck=64)
    assert _extra_params(model, "adaptmlp") == 3_171_840


@pytest.mark.parametrize("experts", [2, 4])
def test_moe_parameters_are_n_adapters_plus_router(experts):
    model = _meta_vit("vit_base_patch16_224", bottleneck=64, num_experts=experts)
    router = 12 * (768 * experts + experts)
    assert _extra_params(model, "adaptmlp") == experts * 1_189_632 + router


def test_attn_mlp_dispatch_doubles_extra_parameters():
    model = _meta_vit("vit_base_patch16_224", bottleneck=64, dispatch="attn_mlp")
    assert _extra_params(model, "adapt") == 2 * 1_189_632


def test_analytic_flops_match_paper_convention():
    assert dyt_flops(VIT_BASE).total == 17_582_049_024
    assert round(dyt_flops(VIT_BASE, 8).gflops, 2) == 17.61
    assert round(dyt_flops(VIT_BASE, 64).gflops, 2) == 17.81
    assert round(dyt_flops(VIT_BASE, 8, [98] * 12).gflops, 2) == 12.06
    assert round(dyt_flops(VIT_LARGE).gflops, 2) == 61.60


def test_analytic_flops_hand_computed_per_block_terms():
    one_layer = ViTDims(depth=1)
    zero = dyt_flops(one_layer, None, [0]).total
    assert dyt_flops(one_layer, None, [1]).total - zero == 4_722_432
    assert dyt_flops(one_layer, 1, [0]).total - zero == 197 * 2 * 768
    stem_and_head = 196 * 768 * 768 + 5 * 197 * 768 + 768 * 100
    assert zero == stem_and_head + 525_148_416 + 4_722_432  # the CLS token always runs the MLP


def test_flops_monotone_in_active_tokens():
    values = [dyt_flops(VIT_BASE, 8, [k] * 12).total for k in range(0, 197, 14)]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_flops_reject_bad_counts():
    with pytest.raises(ValueError, match="one count per dispatcher"):
        dyt_flops(VIT_BASE, 8, [98] * 11)
    with pytest.raises(ValueError, match="must lie"):
        dyt_flops(VIT_BASE, 8, [300] * 12)


@pytest.mark.parametrize("experts", [1, 2, 8])
def test_moe_adapter_costs_about_one_adapter_for_any_expert_count(experts):
    """Merged weights: measured cost = one adapter + a merge/router term of about N/T of it."""
    tokens, width, bottleneck = 197, 64, 8
    moe = dyt.MoEAdapter(width, bottleneck, num_experts=experts).eval()
    measured = count_flops(moe, torch.randn(1, tokens, width)).total
    one_adapter = 2 * tokens * width * bottleneck
    assert one_adapter <= measured <= one_adapter * (1 + 1.5 * experts / tokens)


@pytest.mark.parametrize("seed", [0, 3])
def test_mask_driven_flops_agree_with_shared_counter_on_sparse_path(tiny_dyt, seed, counted_part):
    """Analytic FLOPs (minus LayerNorm, plus the TD) == torch's matmul count of the sparse run."""
    model = tiny_dyt(seed=seed).eval()
    for block in model.blocks:  # torch's counter misses the CPU fused-attention kernel
        block.attn.fused_attn = False
    x = torch.randn(1, 3, 32, 32)
    per_image, active = eval_flops(model, x)
    assert 0 < active.sum() < 16 * 2
    breakdown = dyt_flops(
        ViTDims.from_model(model), dyt.get_dyt_config(model).bottleneck, active[0]
    )
    counted = count_flops(model, x).total
    assert breakdown.total == per_image[0].item()
    assert counted_part(breakdown) == counted


def test_analytic_flops_of_dispatch_variants_hand_computed():
    """One ViT-B block, no adapter: attention over a = 1 + k tokens costs 5aC + 4aC^2 + 2a^2C."""
    one_layer, c = ViTDims(depth=1), 768
    stem_and_head = 196 * 768 * 768 + 5 * 197 * 768 + 768 * 100
    mlp_per_token = 4_722_432

    def attention(a: int) -> int:
        return 5 * a * c + 4 * a * c * c + 2 * a * a * c

    assert attention(197) == 525_148_416
    k = 40
    attn = dyt_flops(one_layer, None, [k], dispatch="attn").total
    assert attn == stem_and_head + attention(1 + k) + 197 * mlp_per_token
    layer = dyt_flops(one_layer, None, [k], dispatch="layer").total
    assert layer == stem_and_head + (1 + k) * mlp_per_token + attention(1 + k)
    both = dyt_flops(one_layer, None, [k, 7], dispatch="attn_mlp").total
    assert both == stem_and_head + attention(1 + k) + (1 + 7) * mlp_per_token
    assert dyt_flops(one_layer, 8, [k, 7], dispatch="attn_mlp").adapter == 2 * 2 * 197 * c * 8


@pytest.mark.parametrize("dispatch", ["attn", "attn_mlp", "layer"])
def test_dispatch_variant_flops_complete_and_monotone(dispatch):
    layers = 24 if dispatch == "attn_mlp" else 12
    complete = dyt_flops(VIT_BASE, 64, None, dispatch=dispatch)
    assert complete.total == dyt_flops(VIT_BASE, 64, [196] * layers, dispatch=dispatch).total
    extra_adapters = 12 * 2 * 197 * 768 * 64 if dispatch == "attn_mlp" else 0
    assert complete.total == dyt_flops(VIT_BASE, 64).total + extra_adapters
    values = [dyt_flops(VIT_BASE, 64, [k] * layers, dispatch=dispatch).total for k in (0, 50, 196)]
    assert values == sorted(values) and len(set(values)) == 3
    with pytest.raises(ValueError, match="one count per dispatcher"):
        dyt_flops(VIT_BASE, 64, [98] * (layers + 1), dispatch=dispatch)


def test_flops_reject_unknown_dispatch():
    with pytest.raises(ValueError, match="dispatch"):
        dyt_flops(VIT_BASE, 8, None, dispatch="token")


@pytest.mark.parametrize("dispatch", ["attn", "attn_mlp", "layer"])
def test_variant_flops_agree_with_shared_counter_on_packed_path(tiny_dyt, dispatch, counted_part):
    """Analytic count (minus LayerNorm, plus TDs) == torch's matmul count of the packed run.

    Batch of 3 with different active counts: the counter sums per-sample packed attention.
    """
    model = tiny_dyt(seed=2, dispatch=dispatch).eval()  # fused CPU attention: shared formula
    x = torch.randn(3, 3, 32, 32)
    per_image, active = eval_flops(model, x)
    layers = 4 if dispatch == "attn_mlp" else 2
    assert active.shape == (3, layers)
    assert 0 < active.sum() < 3 * layers * 16
    assert len(set(active.sum(1).tolist())) > 1, "samples should differ in active counts"
    dims, config = ViTDims.from_model(model), dyt.get_dyt_config(model)
    parts = [dyt_flops(dims, config.bottleneck, row, dispatch) for row in active]
    assert [p.total for p in parts] == per_image.tolist()
    counted = count_flops(dyt.forward_dyt, model, x, sparse=True).total
    assert sum(counted_part(p) for p in parts) == counted
    # the dense key-masked path computes attention and MLP for every token: the complete cost
    dense = count_flops(dyt.forward_dyt, model, x, sparse=False).total
    full = dyt_flops(dims, config.bottleneck, None, dispatch)
    assert dense == 3 * counted_part(full) > counted
