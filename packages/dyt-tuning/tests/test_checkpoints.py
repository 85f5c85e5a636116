import dyt
import pytest
import torch

from papers_shared.checkpoint import CheckpointMismatchError


def _official_layout_state(tiny_dyt) -> dict[str, torch.Tensor]:
    """A synthetic checkpoint with exactly the official code's key layout."""
    source = tiny_dyt(seed=5)
    return {k: torch.randn_like(v) for k, v in source.state_dict().items()}


def test_official_checkpoint_loads_strictly(tiny_dyt, tmp_path):
    state = _official_layout_state(tiny_dyt)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": state, "epoch": 99}, path)
    model = tiny_dyt(seed=1)
    report = dyt.load_official_checkpoint(model, path)
    assert report.ok
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_official_checkpoint_with_wrong_keys_is_refused(tiny_dyt):
    state = _official_layout_state(tiny_dyt)
    state["blocks.0.adapter.down_proj.weight"] = state.pop("blocks.0.adaptmlp.down_proj.weight")
    with pytest.raises(CheckpointMismatchError, match="adaptmlp.down_proj.weight"):
        dyt.load_official_checkpoint(tiny_dyt(), state)


def test_official_round_trip(tiny_dyt, tmp_path):
    model = tiny_dyt(seed=2).eval()
    path = dyt.save_official_checkpoint(model, tmp_path / "ck.pth", epoch=3)
    other = tiny_dyt(seed=9).eval()
    dyt.load_official_checkpoint(other, path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), other(x))


def test_adapter_file_round_trip_holds_only_trainable_tensors(tiny_dyt, tmp_path):
    model = tiny_dyt(seed=2)
    dyt.save_adapter(model, tmp_path)
    assert (tmp_path / "config.json").exists()
    other = tiny_dyt(seed=2, perturb=False)
    dyt.load_adapter(other, tmp_path)
    for name, value in dyt.trainable_state_dict(model).items():
        assert torch.equal(other.state_dict()[name], value)
    saved = dyt.trainable_state_dict(model)
    assert all("adaptmlp" in k or "token_select" in k or k.startswith("head.") for k in saved)


def test_load_adapter_missing_file_raises(tiny_dyt, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter.safetensors"):
        dyt.load_adapter(tiny_dyt(), tmp_path)


def test_backbone_loads_pretrained_vit_and_drops_its_head(tiny_dyt, tiny_vit):
    pretrained = tiny_vit(num_classes=11)
    state = pretrained.state_dict()
    state["pre_logits.fc.weight"] = torch.zeros(3, 3)
    model = tiny_dyt(perturb=False)
    report = dyt.load_backbone(model, state)
    assert torch.equal(model.blocks[0].attn.qkv.weight, pretrained.blocks[0].attn.qkv.weight)
    assert any("adaptmlp" in k for k in report.missing)
    assert model.head.out_features == 5


def test_backbone_position_embedding_is_resampled(tiny_dyt, tiny_vit):
    pretrained = tiny_vit(img_size=16)
    model = tiny_dyt(perturb=False)
    dyt.load_backbone(model, pretrained.state_dict())
    assert model.pos_embed.shape == (1, 17, 32)
    assert torch.equal(model.pos_embed[:, 0], pretrained.pos_embed[:, 0])


def test_malformed_checkpoint_file_gives_clear_error(tiny_dyt, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        dyt.load_official_checkpoint(tiny_dyt(), bad)


@pytest.mark.parametrize("wrapper", ["model", "state_dict", "module", None])
def test_official_state_dict_in_memory_wrapped_or_bare_loads(wrapper, tiny_dyt):
    state = _official_layout_state(tiny_dyt)
    model = tiny_dyt(seed=1)
    dyt.load_official_checkpoint(model, state if wrapper is None else {wrapper: state})
    assert torch.equal(model.state_dict()["blocks.1.adaptmlp.up_proj.weight"],
                       state["blocks.1.adaptmlp.up_proj.weight"])  # fmt: skip


def test_file_from_the_official_training_script_loads(tiny_dyt, tmp_path):
    """{"model", "args": Namespace, "epoch", "max_accuracy"} as the official main.py saves."""
    import argparse

    state = _official_layout_state(tiny_dyt)
    path = tmp_path / "checkpoint-best.pth"
    args = argparse.Namespace(model="vit_base_patch16_224_in21k", lr=1e-3, rate=0.5, epochs=100)
    torch.save({"model": state, "args": args, "epoch": 99, "max_accuracy": 77.1}, path)
    model = tiny_dyt(seed=1)
    assert dyt.load_official_checkpoint(model, path).ok


def test_wrong_variant_file_fails_with_one_line_naming_what_it_looks_like(tiny_dyt, tmp_path):
    import timm

    with torch.device("meta"):
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=100)
    bigger = dyt.convert_vit(vit, bottleneck=64)
    path = tmp_path / "vit_b_d64.pth"
    torch.save({"model": {k: torch.zeros(v.shape) for k, v in bigger.state_dict().items()}}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        dyt.load_official_checkpoint(tiny_dyt(), path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 1500
    assert "ViT-B/16 bottleneck 64" in message and "bottleneck 8" in message


def test_video_checkpoint_round_trips_through_the_official_layout(tiny_vit, tmp_path):
    torch.manual_seed(0)
    model = dyt.convert_vit_to_video(tiny_vit(), num_classes=3, num_frames=2, bottleneck=4)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.1)
    path = dyt.save_official_checkpoint(model, tmp_path / "video.pth")
    saved = torch.load(path, weights_only=True)["model"]
    assert "blocks.0.adaptmlp.down_proj.weight" in saved and "query_token" in saved
    assert not any(k.startswith("backbone.") for k in saved)
    other = dyt.convert_vit_to_video(tiny_vit(), num_classes=3, num_frames=2, bottleneck=4)
    dyt.load_official_checkpoint(other, path)
    video = torch.randn(2, 3, 2, 32, 32)
    model.eval(), other.eval()
    torch.testing.assert_close(model(video), other(video))


def test_swin_backbone_loads_plain_timm_weights_into_base_layers():
    import timm

    args = dict(img_size=32, patch_size=4, window_size=2, embed_dim=16, depths=(2, 2),
                num_heads=(2, 4), num_classes=3)  # fmt: skip
    pretrained = timm.create_model("swin_base_patch4_window7_224", pretrained=False, **args)
    model = dyt.convert_swin(timm.create_model("swin_base_patch4_window7_224", **args))
    report = dyt.load_backbone(model, pretrained.state_dict())
    block = model.layers[1].blocks[0]
    assert torch.equal(
        block.base_layer.attn.qkv.weight, pretrained.layers[1].blocks[0].attn.qkv.weight
    )
    assert all(
        "adaptmlp" in k or "token_select" in k or k.startswith("head.") for k in report.missing
    )
