import pytest
import timm
import torch
from dyt import forward_dyt
from dyt.models.dyt_swin import DyTSwinBlock, convert_swin, swin_flops
from dyt.models.layers import TokenDispatcher

from papers_shared.counting import count_flops, count_parameters

TINY_SWIN = dict(img_size=32, patch_size=4, window_size=2, embed_dim=16, depths=(2, 2),
                 num_heads=(2, 4), num_classes=3)  # fmt: skip


def _tiny_swin(seed: int = 0, perturb: bool = True, **config):
    torch.manual_seed(seed)
    swin = timm.create_model("swin_base_patch4_window7_224", pretrained=False, **TINY_SWIN)
    model = convert_swin(swin, **config)
    if perturb:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "token_select" in name and name.endswith("weight"):
                    param.normal_(0.0, 0.5)
                elif "adaptmlp" in name:
                    param.normal_(0.0, 0.1)
    return model


def test_swin_base_extra_parameters_match_the_paper():
    with torch.device("meta"):
        swin = timm.create_model("swin_base_patch4_window7_224", pretrained=False, num_classes=100)
    model = convert_swin(swin, bottleneck=64)
    adapters = sum(p.numel() for n, p in model.named_parameters() if "adaptmlp" in n)
    dispatchers = sum(p.numel() for n, p in model.named_parameters() if "token_select" in n)
    assert adapters == 1_553_664  # paper: 1.55 M
    assert dispatchers == 2 * 129 + 2 * 257 + 18 * 513 + 2 * 1025
    assert count_parameters(model).trainable == adapters + dispatchers + 1024 * 100 + 100


def test_swin_keys_shapes_and_identity_at_init():
    torch.manual_seed(0)
    reference = timm.create_model("swin_base_patch4_window7_224", pretrained=False, **TINY_SWIN)
    swin = timm.create_model("swin_base_patch4_window7_224", pretrained=False, **TINY_SWIN)
    swin.load_state_dict(reference.state_dict())
    model = convert_swin(swin).eval()
    keys = model.state_dict().keys()
    assert "layers.1.blocks.0.adaptmlp.down_proj.weight" in keys
    assert "layers.1.blocks.0.mlp_token_select.mlp_head.weight" in keys
    assert isinstance(model.layers[0].blocks[0], DyTSwinBlock)
    x = torch.randn(2, 3, 32, 32)
    logits, aux = forward_dyt(model, x, complete=True)
    torch.testing.assert_close(logits, reference.eval()(x), atol=1e-6, rtol=0)
    assert aux["token_select"].shape == (2, 1, 2 * 64 + 2 * 16, 1)
    assert aux["active_per_block"].shape == (2, 4)


@pytest.mark.parametrize("batch", [1, 4])
def test_swin_sparse_eval_equals_dense_eval(batch):
    model = _tiny_swin(seed=1).eval()
    x = torch.randn(batch, 3, 32, 32)
    sparse, aux = forward_dyt(model, x)
    dense, dense_aux = forward_dyt(model, x, sparse=False)
    assert torch.equal(aux["token_select"], dense_aux["token_select"])
    assert 0 < aux["token_select"].mean() < 1
    assert (sparse - dense).abs().max() < 1e-5
    assert model.forward_features(x).shape == (batch, 4, 4, 32)


def test_swin_training_masks_and_gradients():
    model = _tiny_swin().train()
    logits, aux = forward_dyt(model, torch.randn(3, 3, 32, 32))
    assert set(aux["token_select"].detach().unique().tolist()) <= {0.0, 1.0}
    (logits.sum() + aux["token_select"].sum()).backward()
    for name, param in model.named_parameters():
        trainable = "adaptmlp" in name or "token_select" in name or name.startswith("head.")
        assert param.requires_grad == trainable, name
        assert (param.grad is not None) == trainable, name


def test_swin_flops_match_shared_counter_and_complete_swin_base(counted_part):
    model = _tiny_swin(seed=2).eval()
    x = torch.randn(3, 3, 32, 32)
    _, aux = forward_dyt(model, x)
    per_image = [swin_flops(model, row) for row in aux["active_per_block"]]
    counted = count_flops(model, x).total
    assert sum(counted_part(f) for f in per_image) == counted
    dense = count_flops(forward_dyt, model, x, sparse=False).total
    full = swin_flops(model)
    assert dense == 3 * counted_part(full) > counted
    with torch.device("meta"):
        swin_b = timm.create_model("swin_base_patch4_window7_224", pretrained=False)
    assert round(swin_flops(swin_b).gflops, 1) == 15.5  # timm's Swin-B: 15.4 GMACs + norms


def test_convert_swin_rejects_bad_input():
    with pytest.raises(TypeError, match="SwinTransformer"):
        convert_swin(torch.nn.Linear(2, 2))
    swin = timm.create_model("swin_base_patch4_window7_224", pretrained=False, **TINY_SWIN)
    with pytest.raises(ValueError, match="MLP dispatch only"):
        convert_swin(swin, dispatch="attn")
    model = convert_swin(swin, num_classes=7)
    assert model.head.fc.out_features == 7 and isinstance(
        model.layers[0].blocks[0].mlp_token_select, TokenDispatcher
    )
    with pytest.raises(ValueError, match="already"):
        convert_swin(model)
