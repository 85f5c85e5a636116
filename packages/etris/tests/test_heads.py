"""Neck, decoder, projector and position encodings against hand computation."""

import math

import torch
import torch.nn.functional as F
from etris.models.heads import GADecoder, HANeck, Projector, pos1d, pos2d


def test_pos1d_values():
    pe = pos1d(4, 3)
    assert torch.allclose(
        pe[2], torch.tensor([math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)])
    )


def test_pos2d_columns_first_then_rows_row_major():
    pe = pos2d(8, 2, 3)  # half = 4 channels per axis, frequencies 1 and 1e-2
    token = pe[1 * 3 + 2]  # row 1, column 2
    expected = [math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]
    expected += [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]
    assert torch.allclose(token, torch.tensor(expected))


def test_ha_fusion_ignores_query_and_key_weights():
    neck = HANeck((16, 16, 8), state_dim=8, dim=16, strides=(1, 1, 1), num_heads=4).eval()
    feats = tuple(torch.randn(2, c, 4, 4) for c in (16, 16, 8))
    state = torch.randn(2, 8)
    with torch.no_grad():
        before = neck(feats, state)
        for gate in (neck.fusion3, neck.fusion4, neck.fusion5):
            gate.multihead_attn.in_proj_weight[:32].normal_()  # q and k rows
            gate.multihead_attn.in_proj_bias[:32].normal_()
        after = neck(feats, state)
        x = neck.f3_proj(feats[0])
        g = neck.txt_proj(state)
        mha = neck.fusion3.multihead_attn
        value = F.linear(g, mha.in_proj_weight[32:], mha.in_proj_bias[32:])
        expected = x * mha.out_proj(value)[:, :, None, None]
        torch.testing.assert_close(neck.fusion3(x, g), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(before, after)


def test_projector_grouped_conv_equals_per_sample_loop():
    proj = Projector(state_dim=12, in_dim=16).eval()
    x, state = torch.randn(3, 16, 4, 4), torch.randn(3, 12)
    with torch.no_grad():
        out = proj(x, state)
        vis = proj.vis(x)
        params = proj.txt(state)
        for b in range(3):
            weight = params[b, :-1].reshape(1, 8, 3, 3)
            expected = F.conv2d(vis[b : b + 1], weight, params[b, -1:], padding=1)
            torch.testing.assert_close(out[b : b + 1], expected, atol=1e-5, rtol=1e-5)
    assert out.shape == (3, 1, 16, 16)


def test_decoder_ignores_padded_words():
    decoder = GADecoder(num_layers=2, dim=16, num_heads=4, dim_ffn=16).eval()
    vis, words = torch.randn(1, 16, 3, 3), torch.randn(1, 5, 16)
    pad = torch.tensor([[False, False, False, True, True]])
    changed = words.clone()
    changed[:, 3:] = torch.randn(1, 2, 16)
    with torch.no_grad():
        a, b = decoder(vis, words, pad), decoder(vis, changed, pad)
        c = decoder(vis, changed, None)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4
