"""The open_clip towers against open_clip's own forward, and the pieces with a known answer."""

import math

import pytest
import torch
import torch.nn.functional as F
from etris.models.towers import dense_attention_pool, resize_vit_pos_embed
from torch import nn


def _zero_bridger_outputs(model):
    for module in model.bridger.zoom_out:
        if isinstance(module, nn.Sequential):  # ViT: conv + BN + ReLU -> zero BN affine
            nn.init.zeros_(module[1].weight)
            nn.init.zeros_(module[1].bias)
        else:
            nn.init.zeros_(module.weight)
    for linear in model.bridger.linear2:
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)


def _reference_text(clip, ids):
    # open_clip's own encode_text on ids padded to 77: causal attention makes the first L
    # positions independent of the padding beyond L
    padded = torch.zeros(ids.shape[0], 77, dtype=ids.dtype)
    padded[:, : ids.shape[1]] = ids
    x = clip.token_embedding(padded) + clip.positional_embedding
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    words = clip.ln_final(x)[:, : ids.shape[1]]
    return words, clip.encode_text(padded)


@pytest.mark.parametrize("kind", ["rn", "vit"])
@pytest.mark.parametrize("bridger", ["zeroed", "absent"])
def test_stepped_towers_equal_open_clip_forward(kind, bridger, tiny, make_ids):
    model = tiny(kind, use_bridger=bridger == "zeroed").eval()
    if bridger == "zeroed":
        _zero_bridger_outputs(model)
    clip = model.backbone
    image, ids = torch.randn(2, 3, 64, 64), make_ids()
    with torch.no_grad():
        feats = model.forward_features(image, ids)
        words, state = _reference_text(clip, ids)
        if kind == "rn":
            ref = clip.visual.forward_intermediates(
                image, indices=[2, 3, 4], intermediates_only=True
            )
            c3, c4, c5 = ref["image_intermediates"]
            expected = [c3, c4, dense_attention_pool(clip.visual.attnpool, c5)]
        else:
            ref = clip.visual.forward_intermediates(
                image, indices=[3, 7, 11], intermediates_only=True
            )
            f1, f2, last = ref["image_intermediates"]
            tokens = last.flatten(2).transpose(1, 2)
            out = clip.visual.ln_post(tokens) @ clip.visual.proj
            expected = [f1, f2, out.transpose(1, 2).reshape(2, -1, 4, 4)]
            # the pooled class token of open_clip's full forward comes from the same blocks
            pooled = clip.encode_image(image)
            assert torch.isfinite(pooled).all()
    for ours, theirs in zip(feats.feats, expected):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.words, words, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.state, state, atol=1e-5, rtol=1e-5)


def test_bridger_changes_the_towers_from_step_zero(tiny, make_ids):
    with_bridger = tiny("rn").eval()
    plain = tiny("rn", use_bridger=False).eval()
    plain.backbone.load_state_dict(with_bridger.backbone.state_dict())
    image, ids = torch.randn(2, 3, 64, 64), make_ids()
    with torch.no_grad():
        a, b = with_bridger.forward_features(image, ids), plain.forward_features(image, ids)
    assert not torch.allclose(a.feats[1], b.feats[1], atol=1e-4)
    assert not torch.allclose(a.state, b.state, atol=1e-5)


def test_dense_attention_pool_equals_hand_written_attention(tiny):
    pool = tiny("rn").backbone.visual.attnpool.eval()
    x = torch.randn(2, 256, 3, 3)
    with torch.no_grad():
        ours = dense_attention_pool(pool, x)
        pos = pool.positional_embedding[1:].reshape(1, 2, 2, 256).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(3, 3), mode="bicubic", align_corners=False)
        tokens = (x + pos).flatten(2).transpose(1, 2)  # (B, N, C)
        heads = pool.num_heads
        head_dim = 256 // heads

        def split(t):
            return t.reshape(2, 9, heads, head_dim).transpose(1, 2)

        q, k, v = split(pool.q_proj(tokens)), split(pool.k_proj(tokens)), split(pool.v_proj(tokens))
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        mixed = (attn @ v).transpose(1, 2).reshape(2, 9, 256)
        out = pool.c_proj(mixed).transpose(1, 2).reshape(2, -1, 3, 3)
        expected = F.relu(out + pool.connect(x))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def _cubic_resize_1d(values: torch.Tensor, out_len: int) -> torch.Tensor:
    """Hand-written cubic convolution (a = -0.75), half-pixel centres, clamped borders; dim 0."""
    in_len, a = values.shape[0], -0.75

    def kernel(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    rows = []
    for i in range(out_len):
        src = (i + 0.5) * in_len / out_len - 0.5
        base = math.floor(src)
        row = torch.zeros_like(values[0])
        for j in range(base - 1, base + 3):
            row = row + kernel(src - j) * values[min(max(j, 0), in_len - 1)]
        rows.append(row)
    return torch.stack(rows)


def test_vit_position_resize_is_bicubic_without_antialias():
    table = torch.randn(1 + 14 * 14, 6, dtype=torch.float64)
    resized = resize_vit_pos_embed(table, 26)
    assert resized.shape == (1 + 26 * 26, 6)
    assert torch.equal(resized[0], table[0])
    grid = table[1:].reshape(14, 14, 6)
    expected = _cubic_resize_1d(_cubic_resize_1d(grid, 26).transpose(0, 1), 26).transpose(0, 1)
    torch.testing.assert_close(resized[1:].reshape(26, 26, 6), expected, atol=1e-10, rtol=0)
    aa = F.interpolate(
        grid.permute(2, 0, 1)[None],
        size=(26, 26),
        mode="bicubic",
        align_corners=False,
        antialias=True,
    )[0].permute(1, 2, 0)
    assert (aa - expected).abs().max() > 1e-3


def test_pretrained_local_file_resizes_the_vit_grid_itself(tmp_path, tiny):
    from etris.models.etris import ETRIS_VARIANTS
    from etris.models.towers import create_clip

    cfg = ETRIS_VARIANTS["etris_test_vit"]["clip_config"]
    torch.manual_seed(3)
    native = create_clip("test-vit", 32, cfg)  # 2x2 grid, as weights trained at a smaller size
    path = tmp_path / "clip.pt"
    torch.save(native.state_dict(), path)
    model = tiny("vit", pretrained=str(path))
    pos = model.backbone.visual.positional_embedding
    torch.testing.assert_close(pos, resize_vit_pos_embed(native.visual.positional_embedding, 4))
    torch.testing.assert_close(model.backbone.token_embedding.weight, native.token_embedding.weight)
    with pytest.raises(FileNotFoundError):
        tiny("vit", pretrained=str(tmp_path / "missing.pt"))


def test_simultaneous_update_reads_pre_update_features(tiny):
    bridger = tiny("rn").bridger.eval()
    vis, txt = torch.randn(2, 64, 8, 8), torch.randn(2, 8, 32)
    with torch.no_grad():
        new_vis, new_txt, _ = bridger.fuse(0, vis, txt, None)
        v = bridger.zoom_in[0](vis).flatten(2).permute(2, 0, 1)
        t = bridger.linear1[0](txt).transpose(0, 1)
        v_new = bridger.fusion_v[0](v, t)
        t_simultaneous = bridger.fusion_t[0](t, v)
        t_sequential = bridger.fusion_t[0](t, v_new)
        expected_txt = txt + bridger.linear2[0](t_simultaneous).transpose(0, 1)
        sequential_txt = txt + bridger.linear2[0](t_sequential).transpose(0, 1)
        expected_vis = vis + bridger.zoom_out[0](v_new.permute(1, 2, 0).reshape(2, 16, 4, 4))
    torch.testing.assert_close(new_txt, expected_txt)
    torch.testing.assert_close(new_vis, expected_vis)
    assert (new_txt - sequential_txt).abs().max() > 1e-6


def test_later_stages_need_previous_and_check_grid(tiny):
    bridger = tiny("rn").bridger.eval()
    with pytest.raises(ValueError, match="previous stage"):
        bridger.fuse(1, torch.randn(1, 128, 4, 4), torch.randn(1, 8, 32), None)
    prev = (torch.randn(9, 1, 16), torch.randn(8, 1, 16))
    with pytest.raises(ValueError, match="one grid"):
        bridger.fuse(1, torch.randn(1, 128, 4, 4), torch.randn(1, 8, 32), prev)


def test_bridger_init_follows_the_official_code(tiny):
    bridger = tiny("rn").bridger
    lin = bridger.linear1[0]
    assert torch.equal(lin.bias, torch.zeros_like(lin.bias))
    out_proj = bridger.fusion_v[0].self_attn.out_proj
    assert torch.equal(out_proj.bias, torch.zeros_like(out_proj.bias))
    assert 0.01 < out_proj.weight.std() < 0.03
    conv = bridger.zoom_in[1]  # 1x1, 128 -> 16: kaiming fan_out std = sqrt(2 / 16)
    assert abs(conv.weight.std().item() - math.sqrt(2 / 16)) < 0.05
    assert torch.equal(bridger.ln_v[0].weight, torch.ones(16))
