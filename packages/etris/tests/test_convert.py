"""Official checkpoint layout: key names and shapes of the released code, and loading such a file."""

import pytest
import torch
from etris.convert import (
    convert_official_state_dict,
    load_etris_weights,
    load_official_checkpoint,
    to_official_checkpoint,
)

# official key -> shape for the tiny RN variant (Bridger d=16, C3/C4/C5 = 64/128/256, text 32,
# D_out 32, neck/decoder width 32), written from the official module layout
OFFICIAL_RN_KEYS = {
    "bridger.zoom_in.0.weight": (16, 64, 2, 2),  # Conv2d k2 s2
    "bridger.zoom_in.1.weight": (16, 128, 1, 1),
    "bridger.zoom_in.2.weight": (256, 16, 2, 2),  # ConvTranspose2d: (in, out, k, k)
    "bridger.zoom_out.0.weight": (16, 64, 2, 2),  # ConvTranspose2d
    "bridger.zoom_out.2.weight": (256, 16, 2, 2),  # Conv2d
    "bridger.linear1.0.weight": (16, 32),
    "bridger.linear2.2.bias": (32,),
    "bridger.ln_v.1.weight": (16,),
    "bridger.ln_t.0.bias": (16,),
    "bridger.fusion_v.0.self_attn.in_proj_weight": (48, 16),
    "bridger.fusion_t.2.multihead_attn.out_proj.weight": (16, 16),
    "bridger.fusion_v.1.linear1.weight": (32, 16),
    "bridger.fusion_v.1.norm3.weight": (16,),
    "backbone.visual.attnpool.connect.0.weight": (32, 256, 1, 1),
    "backbone.visual.attnpool.connect.1.running_var": (32,),
    "backbone.visual.attnpool.connect.1.num_batches_tracked": (),
    "backbone.visual.attnpool.positional_embedding": (5, 256),
    "backbone.transformer.resblocks.11.mlp.c_proj.weight": (32, 128),
    "backbone.text_projection": (32, 32),
    "neck.fusion3.multihead_attn.in_proj_weight": (96, 32),
    "neck.txt_proj.weight": (32, 32),
    "neck.f3_proj.0.weight": (32, 64, 2, 2),
    "neck.f5_proj.0.weight": (32, 32, 2, 2),
    "neck.aggr.0.weight": (32, 96, 1, 1),
    "neck.coordconv.0.conv1.0.weight": (32, 34, 3, 3),
    "neck.coordconv.1.1.running_mean": (32,),
    "decoder.layers.0.self_attn_norm.weight": (32,),
    "decoder.layers.2.cross_attn_norm.bias": (32,),
    "decoder.layers.1.ffn.0.weight": (32, 32),
    "decoder.layers.1.ffn.3.weight": (32,),
    "decoder.layers.1.ffn.4.weight": (32, 32),
    "decoder.norm.weight": (32,),
    "proj.vis.1.0.weight": (32, 32, 3, 3),
    "proj.vis.3.1.weight": (16,),
    "proj.vis.4.bias": (16,),
    "proj.txt.weight": (16 * 9 + 1, 32),
}
OFFICIAL_VIT_KEYS = {
    "bridger.zoom_in.0.0.weight": (16, 48, 1, 1),
    "bridger.zoom_in.0.1.running_mean": (16,),
    "bridger.zoom_in.2.0.weight": (48, 16, 1, 1),  # ConvTranspose2d at the last stage
    "bridger.zoom_out.0.0.weight": (16, 48, 1, 1),  # ConvTranspose2d
    "bridger.zoom_out.2.1.weight": (48,),
    "bridger.fusion_v.0.multihead_attn.in_proj_weight": (48, 16),
    "backbone.visual.positional_embedding": (17, 48),
    "backbone.visual.proj": (48, 32),
}


@pytest.mark.parametrize("kind", ["rn", "vit"])
def test_model_has_the_official_keys_and_shapes(kind, tiny):
    state = tiny(kind).state_dict()
    table = OFFICIAL_RN_KEYS if kind == "rn" else OFFICIAL_VIT_KEYS
    for key, shape in table.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    if kind == "vit":
        assert not any(k.startswith("bridger.fusion_v.0.self_attn") for k in state)
    groups = {k.split(".")[0] for k in state}
    assert groups == {"backbone", "bridger", "neck", "decoder", "proj"}


def test_official_container_loads_and_reports_problems(tmp_path, tiny, make_ids):
    source = tiny("rn", seed=5).eval()
    ckpt = to_official_checkpoint(source, epoch=37, best_iou=0.7)
    ckpt["prec"] = {"Pr@50": 0.8}
    ckpt["optimizer"] = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4}]}
    ckpt["scheduler"] = {"milestones": {35: 1}, "last_epoch": 37}
    assert all(k.startswith("module.") for k in ckpt["state_dict"])
    path = tmp_path / "best_model.pth"
    torch.save(ckpt, path)
    target = tiny("rn", seed=9).eval()
    meta = load_official_checkpoint(target, path)
    assert meta["epoch"] == 37
    image, ids = torch.randn(1, 3, 64, 64), make_ids(1)
    with torch.no_grad():
        assert torch.equal(source(image, ids), target(image, ids))
    # a checkpoint missing a group is refused with the key named
    del ckpt["state_dict"]["module.neck.txt_proj.weight"]
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="neck.txt_proj.weight"):
        load_official_checkpoint(tiny("rn"), path)


def test_vit_grid_from_a_224_style_checkpoint_is_resized(tiny):
    model = tiny("vit")
    state = dict(model.state_dict())
    small = torch.randn(1 + 2 * 2, 48)
    state["module.backbone.visual.positional_embedding"] = small
    del state["backbone.visual.positional_embedding"]
    state["backbone.input_resolution"] = torch.tensor(224)
    out = convert_official_state_dict(state, model)
    assert out["backbone.visual.positional_embedding"].shape == (17, 48)
    assert "backbone.input_resolution" not in out
    with pytest.raises(ValueError, match="unexpected key"):
        convert_official_state_dict({"head.weight": torch.zeros(1)})


def test_load_from_run_folder_safetensors(tmp_path, tiny):
    from papers_shared.checkpoint import save_safetensors

    source = tiny("vit", seed=1)
    save_safetensors(source.state_dict(), tmp_path / "model.safetensors")
    target = tiny("vit", seed=2)
    load_etris_weights(target, tmp_path)
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key
    with pytest.raises(FileNotFoundError):
        load_etris_weights(target, tmp_path / "nothing.pth")
