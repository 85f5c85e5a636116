"""Float64 equivalence against a deliberately naive, independent implementation.

The naive forward reads only the state dict: explicit per-head loops, the N x N product
(q softmax(k)^T) v instead of q (softmax(k)^T v), separate convs per branch and per q/k/v, with the
aggregator BatchNorms applied to the concatenation [q; k; v] (joint statistics in training).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from groupmixformer import GroupMixFormer
from torch import nn

CONFIG = {"embed_dims": (40, 60, 80, 100), "depths": (2, 1, 1, 1), "mlp_ratios": (4, 2, 4, 2)}


def _bn(x, sd, prefix, training):
    return F.batch_norm(
        x,
        sd[prefix + ".running_mean"].clone(),
        sd[prefix + ".running_var"].clone(),
        sd[prefix + ".weight"],
        sd[prefix + ".bias"],
        training=training,
        momentum=0.0,
        eps=1e-5,
    )


def _sep(x, sd, prefix, kernel):
    x = F.conv2d(x, sd[prefix + ".conv1.weight"], padding=kernel // 2, groups=x.shape[1])
    return F.conv2d(x, sd[prefix + ".pointwise_conv.weight"])


def _to_img(tokens, h, w):
    b, n, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, h, w)


def _to_tokens(img):
    return img.flatten(2).transpose(1, 2)


def naive_attention(x, sd, p, h, w, training):
    b, n, dim = x.shape
    c, heads = dim // 5, 8
    d = 4 * c // heads
    qkv = x @ sd[p + "qkv.weight"].T + sd[p + "qkv.bias"]
    imgs = [_to_img(qkv[..., i * dim : (i + 1) * dim], h, w) for i in range(3)]  # q, k, v
    agg = p + "aggregator."
    mixed = [[], [], []]
    for s in range(4):
        parts = [img[:, s * c : (s + 1) * c] for img in imgs]
        if s > 0:
            parts = [_sep(t, sd, agg + f"agg{s}", 2 * s + 1) for t in parts]
        joint = F.hardswish(_bn(torch.cat(parts, 0), sd, agg + f"norm{s}", training))
        for i in range(3):
            mixed[i].append(joint[i * b : (i + 1) * b])
    q, k, v = (torch.cat(m, 1) for m in mixed)  # (B, 4c, H, W) each
    local = torch.cat([img[:, 4 * c :] for img in imgs], 1)
    local = _to_tokens(_sep(local, sd, agg + "agg0.conv", 3))
    local = F.hardswish(
        F.layer_norm(local, (c,), sd[agg + "agg0.norm.weight"], sd[agg + "agg0.norm.bias"], 1e-5)
    )
    scale = (dim // heads) ** -0.5
    crpe_of_head = [(0, 0, 3)] * 2 + [(1, 2, 5)] * 3 + [(2, 5, 7)] * 3  # (conv, first head, k)
    outs = []
    for head in range(heads):
        sl = slice(head * d, (head + 1) * d)
        qh, kh, vh = (_to_tokens(t[:, sl]) for t in (q, k, v))  # (B, N, d)
        kt = torch.softmax(kh, dim=1)
        attention = (qh @ kt.transpose(1, 2)) @ vh  # N x N, then x v
        conv, first, kernel = crpe_of_head[head]
        wsl = slice((head - first) * d, (head - first + 1) * d)
        rel = F.conv2d(
            v[:, sl],
            sd[p + f"crpe.conv_list.{conv}.weight"][wsl],
            sd[p + f"crpe.conv_list.{conv}.bias"][wsl],
            padding=kernel // 2,
            groups=d,
        )
        outs.append(scale * attention + qh * _to_tokens(rel))
    out = torch.cat(outs + [local], dim=-1)
    return out @ sd[p + "proj.weight"].T + sd[p + "proj.bias"]


def naive_forward(sd, x, depths, training):
    x = F.hardswish(
        _bn(
            F.conv2d(
                x, sd["conv_stem.proj1.weight"], sd["conv_stem.proj1.bias"], stride=2, padding=1
            ),
            sd,
            "conv_stem.norm1",
            training,
        )
    )
    x = F.hardswish(
        _bn(
            F.conv2d(
                x, sd["conv_stem.proj2.weight"], sd["conv_stem.proj2.bias"], stride=2, padding=1
            ),
            sd,
            "conv_stem.norm2",
            training,
        )
    )
    for stage, depth in enumerate(depths):
        pe = f"patch_embed_layers.{stage}."
        x = F.conv2d(
            x,
            sd[pe + "proj.conv1.weight"],
            stride=1 if stage == 0 else 2,
            padding=1,
            groups=x.shape[1],
        )
        x = F.hardswish(
            _bn(F.conv2d(x, sd[pe + "proj.pointwise_conv.weight"]), sd, pe + "norm", training)
        )
        h, w = x.shape[2:]
        tokens = _to_tokens(x)
        dim = tokens.shape[-1]
        for j in range(depth):
            p = f"groupmixformer_backbone.{stage}.gma_stage.{j}."
            img = _to_img(tokens, h, w)
            img = img + F.conv2d(
                img, sd[p + "cpe.proj.weight"], sd[p + "cpe.proj.bias"], padding=1, groups=dim
            )
            tokens = _to_tokens(img)
            normed = F.layer_norm(
                tokens, (dim,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6
            )
            tokens = tokens + naive_attention(normed, sd, p + "att.", h, w, training)
            normed = F.layer_norm(
                tokens, (dim,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6
            )
            hidden = F.gelu(normed @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
            tokens = tokens + hidden @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
        x = _to_img(tokens, h, w)
    x = _bn(x, sd, "norm4", training).mean(dim=(2, 3))
    return x @ sd["head.weight"].T + sd["head.bias"]


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Random BN running stats and random LN/BN affine parameters (so folding is exercised)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=gen))
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(
                    0.3 * torch.randn(module.running_mean.shape, generator=gen)
                )
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)


@pytest.fixture(scope="module")
def model64() -> GroupMixFormer:
    torch.manual_seed(0)
    model = GroupMixFormer(**CONFIG, num_classes=7, drop_path_rate=0.0).double()
    randomize_norms(model)
    return model


@pytest.mark.parametrize("fused", [True, False])
def test_eval_matches_naive_reference_float64(model64, fused):
    model64.eval()
    model64.set_fused_eval(fused)
    # float64 grouped convs have no fast kernel: keep the image small (stage grids 8x12 .. 1x2)
    x = torch.randn(2, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sd = {k: v.clone() for k, v in model64.state_dict().items()}
    with torch.no_grad():
        ours = model64(x)
        naive = naive_forward(sd, x, CONFIG["depths"], training=False)
    model64.set_fused_eval(True)
    torch.testing.assert_close(ours, naive, rtol=0, atol=1e-10)


def test_train_mode_matches_naive_joint_qkv_batchnorm(model64):
    model64.train()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    sd = {k: v.clone() for k, v in model64.state_dict().items()}
    with torch.no_grad():
        ours = model64(x)
    model64.load_state_dict(sd)  # undo the running-stat update
    naive = naive_forward(sd, x, CONFIG["depths"], training=True)
    torch.testing.assert_close(ours, naive, rtol=0, atol=1e-10)


def test_train_mode_differs_from_per_qkv_batchnorm(model64):
    """Sanity check of the test itself: BN per q/k/v separately gives a different output."""
    model64.train()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sd = {k: v.clone() for k, v in model64.state_dict().items()}
    joint = naive_forward(sd, x, CONFIG["depths"], training=True)
    separate_bn = _bn

    def per_tensor_bn(t, sd_, prefix, training):
        if ".aggregator.norm" not in prefix:
            return separate_bn(t, sd_, prefix, training)
        return torch.cat([separate_bn(c, sd_, prefix, training) for c in t.chunk(3)])

    globals()["_bn"] = per_tensor_bn
    try:
        separate = naive_forward(sd, x, CONFIG["depths"], training=True)
    finally:
        globals()["_bn"] = separate_bn
    assert (joint - separate).abs().max() > 1e-6
