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
