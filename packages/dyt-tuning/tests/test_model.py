import dyt
import pytest
import timm
import torch
from dyt import forward_dyt
from dyt.models.dyt_vit import DyTBlock


def test_output_shapes_and_aux_without_prefix_column(tiny_dyt):
    model = tiny_dyt()
    logits, aux = forward_dyt(model, torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 5)
    assert aux["token_select"].shape == (3, 2, 16, 1)
    assert aux["token_logits"].shape == (3, 2, 16, 1)


def test_blocks_keep_official_key_names(tiny_dyt):
    keys = tiny_dyt().state_dict().keys()
    for name in (
        "adaptmlp.down_proj.weight",
        "adaptmlp.down_proj.bias",
        "adaptmlp.up_proj.weight",
        "adaptmlp.up_proj.bias",
        "mlp_token_select.mlp_head.weight",
        "mlp_token_select.mlp_head.bias",
        "norm1.weight",
        "attn.qkv.weight",
        "mlp.fc1.weight",
        "norm2.weight",
    ):
        assert f"blocks.1.{name}" in keys
    assert tiny_dyt().state_dict()["blocks.0.mlp_token_select.mlp_head.weight"].shape == (1, 32)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_complete_forward_equals_timm_vit_at_init(mode, tiny_vit):
    torch.manual_seed(0)
    vit = tiny_vit()
    reference = tiny_vit()
    reference.load_state_dict(vit.state_dict())
    model = dyt.convert_vit(vit)
    getattr(model, mode)()
    reference.eval()
    x = torch.randn(2, 3, 32, 32)
    if mode == "train":  # adapter dropout acts on a zero output; timm ViT has no dropout here
        reference.train()
    torch.testing.assert_close(
        forward_dyt(model, x, complete=True)[0], reference(x), atol=1e-6, rtol=0
    )


def test_cls_token_is_always_processed(tiny_dyt):
    model = tiny_dyt().eval()
    with torch.no_grad():
        for block in model.blocks:  # every patch token rejected
            block.mlp_token_select.mlp_head.bias.fill_(-100.0)
    x = torch.randn(2, 3, 32, 32)
    _, aux = forward_dyt(model, x)
    assert aux["token_select"].sum() == 0
    block = model.blocks[0]
    tokens = torch.randn(2, 17, 32)
    out = block(tokens)
    attn_out = tokens + block._attention(tokens)
    mlp_out = block._mlp(attn_out)
    expected = attn_out + block.adaptmlp(attn_out)
    expected[:, 0] += mlp_out[:, 0]
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("batch", [1, 5])
def test_sparse_eval_equals_dense_eval(batch, tiny_dyt):
    model = tiny_dyt(seed=1).eval()
    x = torch.randn(batch, 3, 32, 32)
    sparse_logits, aux = forward_dyt(model, x, sparse=True)
    dense_logits, dense_aux = forward_dyt(model, x, sparse=False)
    counts = aux["token_select"].sum(dim=(1, 2, 3))
    if batch > 1:
        assert len(set(counts.tolist())) > 1, "samples should have different active counts"
    assert 0 < aux["token_select"].mean() < 1
    assert torch.equal(aux["token_select"], dense_aux["token_select"])
    assert (sparse_logits - dense_logits).abs().max() < 1e-5


def test_sparse_is_default_in_eval_and_switchable(tiny_dyt):
    model = tiny_dyt().eval()
    calls = []
    model.blocks[0]._packed_mlp = lambda x, m: calls.append(1) or x
    model(torch.randn(1, 3, 32, 32))
    assert calls
    calls.clear()
    dyt.set_sparse_inference(model, False)
    assert not dyt.get_dyt_config(model).sparse_inference
    model(torch.randn(1, 3, 32, 32))
    assert not calls


def test_eval_masks_are_deterministic_threshold(tiny_dyt):
    model = tiny_dyt().eval()
    x = torch.randn(4, 3, 32, 32)
    _, aux_a = forward_dyt(model, x)
    _, aux_b = forward_dyt(model, x)
    assert torch.equal(aux_a["token_select"], aux_b["token_select"])
    assert torch.equal(aux_a["token_select"], (aux_a["token_logits"] > 0).float())


def test_train_masks_are_binary_and_stochastic(tiny_dyt):
    model = tiny_dyt().train()
    x = torch.randn(4, 3, 32, 32)
    masks_a = forward_dyt(model, x)[1]["token_select"].detach()
    masks_b = forward_dyt(model, x)[1]["token_select"].detach()
    assert set(masks_a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(masks_a, masks_b)


def test_gradients_reach_only_trainable_parameters(tiny_dyt):
    model = tiny_dyt().train()
    logits, aux = forward_dyt(model, torch.randn(4, 3, 32, 32))
    (logits.sum() + aux["token_select"].sum()).backward()
    for name, param in model.named_parameters():
        trainable = "adaptmlp" in name or "token_select" in name or name.startswith("head.")
        assert param.requires_grad == trainable, name
        if trainable:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_prefix_tokens_generalise_to_registers_and_no_class_token(tiny_dyt):
    regs = tiny_dyt(vit_args=dict(reg_tokens=2)).eval()
    logits, aux = forward_dyt(regs, torch.randn(2, 3, 32, 32))
    assert aux["token_select"].shape == (2, 2, 16, 1)
    dense = forward_dyt(regs, torch.randn(2, 3, 32, 32), sparse=False)
    assert dense[0].shape == logits.shape
    no_cls = tiny_dyt(vit_args=dict(class_token=False, global_pool="avg")).eval()
    x = torch.randn(3, 3, 32, 32)
    sparse, aux = forward_dyt(no_cls, x)
    assert aux["token_select"].shape == (3, 2, 16, 1)
    assert (sparse - forward_dyt(no_cls, x, sparse=False)[0]).abs().max() < 1e-5


@pytest.mark.parametrize("dispatch", ["attn", "attn_mlp", "layer"])
def test_experimental_dispatch_variants_train_and_eval(dispatch, tiny_dyt):
    model = tiny_dyt(dispatch=dispatch)
    x = torch.randn(3, 3, 32, 32)
    logits, aux = forward_dyt(model.train(), x)
    expected_layers = 4 if dispatch == "attn_mlp" else 2
    assert aux["token_select"].shape == (3, expected_layers, 16, 1)
    (logits.sum() + aux["token_select"].sum()).backward()
    td_grads = [p.grad for n, p in model.named_parameters() if "token_select" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in td_grads)
    model.eval()
    eval_logits, eval_aux = forward_dyt(model, x)
    assert torch.isfinite(eval_logits).all()


def test_moe_model_runs_sparse_equals_dense(tiny_dyt):
    model = tiny_dyt(num_experts=3).eval()
    x = torch.randn(3, 3, 32, 32)
    assert (
        forward_dyt(model, x, sparse=True)[0] - forward_dyt(model, x, sparse=False)[0]
    ).abs().max() < 1e-5


def test_convert_rejects_non_vit_and_double_conversion(tiny_dyt):
    with pytest.raises(TypeError, match="VisionTransformer"):
        dyt.convert_vit(torch.nn.Linear(2, 2))
    model = tiny_dyt()
    with pytest.raises(ValueError, match="already"):
        dyt.convert_vit(model)


def test_bad_config_values_raise():
    with pytest.raises(ValueError, match="rate"):
        dyt.DyTConfig(rate=1.5)
    with pytest.raises(ValueError, match="dispatch"):
        dyt.DyTConfig(dispatch="token")
    with pytest.raises(ValueError, match="bottleneck"):
        dyt.DyTConfig(bottleneck=0)


def test_wrong_input_shape_raises(tiny_dyt):
    with pytest.raises((ValueError, RuntimeError)):
        tiny_dyt()(torch.randn(3, 32, 32))


def test_timm_registered_names_build():
    model = timm.create_model("dyt_vit_test", num_classes=3, bottleneck=4, rate=0.3)
    assert isinstance(model.blocks[0], DyTBlock)
    assert dyt.get_dyt_config(model).bottleneck == 4 and dyt.get_dyt_config(model).rate == 0.3
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_convert_with_new_head_initialises_it(tiny_vit):
    model = dyt.convert_vit(tiny_vit(), num_classes=7, head_init_std=0.01)
    assert model.head.out_features == 7
    assert torch.all(model.head.bias == 0) and model.head.weight.std() < 0.02
    assert model.head.weight.requires_grad


def test_forward_intermediates_follow_timm_contract(tiny_dyt):
    model = tiny_dyt().eval()
    x = torch.randn(2, 3, 32, 32)
    maps = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert [tuple(m.shape) for m in maps] == [(2, 32, 4, 4), (2, 32, 4, 4)]
    final, tokens = model.forward_intermediates(x, indices=[1], output_fmt="NLC", norm=True)
    assert final.shape == (2, 17, 32) and tokens[0].shape == (2, 16, 32)  # prefix split off
    torch.testing.assert_close(tokens[0], final[:, 1:])
    torch.testing.assert_close(final, model.forward_features(x))
    last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
    first = model.forward_intermediates(x, indices=[0], intermediates_only=True)
    torch.testing.assert_close(last_two[0], first[0])  # last-n: blocks 0 and 1 of 2


@pytest.mark.parametrize("dispatch", ["attn", "attn_mlp", "layer"])
@pytest.mark.parametrize("batch", [1, 5])
def test_variant_packed_eval_equals_key_masked_dense_eval(dispatch, batch, tiny_dyt):
    model = tiny_dyt(seed=4, dispatch=dispatch).eval()
    x = torch.randn(batch, 3, 32, 32)
    sparse_logits, aux = forward_dyt(model, x)  # packed is the eval default
    dense_logits, dense_aux = forward_dyt(model, x, sparse=False)
    assert torch.equal(aux["token_select"], dense_aux["token_select"])
    assert 0 < aux["token_select"].mean() < 1
    if batch > 1:
        assert len(set(aux["token_select"].sum(dim=(1, 2, 3)).tolist())) > 1
    assert (sparse_logits - dense_logits).abs().max() < 1e-5


@pytest.mark.parametrize("dispatch", ["attn", "attn_mlp", "layer"])
def test_variants_stay_finite_when_a_sample_without_prefix_tokens_skips_everything(
    dispatch, tiny_dyt
):
    model = tiny_dyt(dispatch=dispatch, vit_args=dict(class_token=False, global_pool="avg"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "token_select" in name and name.endswith("bias"):
                param.fill_(-100.0)  # every token rejected in eval
    for block in model.blocks:  # timm's explicit softmax path gives NaN rows if all keys masked
        block.attn.fused_attn = False
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    sparse, aux = forward_dyt(model, x)
    dense = forward_dyt(model, x, sparse=False)[0]
    assert aux["token_select"].sum() == 0
    assert torch.isfinite(dense).all() and torch.isfinite(sparse).all()
    assert (sparse - dense).abs().max() < 1e-5
    model.train()
    logits, aux = forward_dyt(model, x)
    (logits.sum() + aux["token_select"].sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_conversion_keeps_the_timm_class_and_holds_the_original_layers(tiny_vit):
    from timm.models.vision_transformer import VisionTransformer

    vit = tiny_vit()
    original = list(vit.blocks)
    model = dyt.convert_vit(vit)
    assert type(model) is VisionTransformer  # no class rewriting
    for block, timm_block in zip(model.blocks, original):
        assert isinstance(block, DyTBlock)
        for name in ("norm1", "attn", "ls1", "norm2", "mlp", "ls2"):
            assert getattr(block, name) is getattr(timm_block, name), name


@pytest.mark.parametrize("sparse", [True, False])
def test_forward_equals_a_hand_written_dyt_reference(sparse, tiny_dyt):
    """out = x + m * MLP(norm2(x)) + adapter(x) after attention, m = 1[TD(x) > 0], CLS kept."""
    model = tiny_dyt(seed=3).eval()
    dyt.set_sparse_inference(model, sparse)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
        for block in model.blocks:
            x = x + block.ls1(block.attn(block.norm1(x)))
            logits = block.mlp_token_select.mlp_head(x[:, 1:])
            mask = torch.cat([torch.ones_like(logits[:, :1]), (logits > 0).float()], dim=1)
            x = x + mask * block.ls2(block.mlp(block.norm2(x))) + block.adaptmlp(x)
        expected = model.forward_head(model.norm(x))
        got = model(images)
    assert (got - expected).abs().max() < 1e-5


def test_registered_model_follows_timm_conventions():
    model = timm.create_model("dyt_vit_test").eval()
    assert model.default_cfg["input_size"] == (3, 32, 32)  # matches the 32 px model
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 10)
    assert isinstance(model.train()(x), torch.Tensor)  # logits in training too
    model.eval()
    torch.testing.assert_close(torch.jit.script(model)(x), logits)
    features = timm.create_model("dyt_vit_test", features_only=True).eval()
    assert [tuple(f.shape) for f in features(x)] == [(2, 32, 4, 4)] * 3
    assert isinstance(features.model.blocks[0], DyTBlock)
    with pytest.raises(TypeError):
        timm.create_model("dyt_vit_test", not_a_model_arg=1)


def test_fx_feature_extraction_matches_eager():
    from timm.models import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    model = timm.create_model("dyt_vit_test").eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "token_select" in name and name.endswith("weight"):
                param.normal_(0.0, 0.5)
    tracer = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
    _, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer)
    fx_model = create_feature_extractor(model, return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(next(iter(fx_model(x).values())), model(x))


def test_forward_dyt_refuses_gradient_checkpointing_in_training(tiny_dyt):
    model = tiny_dyt().train()
    model.set_grad_checkpointing(True)
    with pytest.raises(ValueError, match="checkpointing"):
        dyt.forward_dyt(model, torch.randn(1, 3, 32, 32))
    model.eval()
    logits, aux = dyt.forward_dyt(model, torch.randn(1, 3, 32, 32))  # eval is fine
    assert aux["token_select"].shape == (1, 2, 16, 1)
