"""The demo's ablation arm (Group-Mix Attention replaced by plain self-attention) and its verdict."""

from __future__ import annotations

import pytest
import torch
from groupmixformer.demo import DEMO_MODEL_KWARGS, MARGIN, SelfAttention, with_plain_attention
from groupmixformer.models import GroupMixAttention, GroupMixFormer


def test_plain_attention_arm_keeps_everything_but_the_attention():
    torch.manual_seed(0)
    gma = GroupMixFormer(**DEMO_MODEL_KWARGS, in_chans=1, num_classes=10)
    mhsa = with_plain_attention(GroupMixFormer(**DEMO_MODEL_KWARGS, in_chans=1, num_classes=10))
    assert not any(isinstance(m, GroupMixAttention) for m in mhsa.modules())
    assert sum(isinstance(m, SelfAttention) for m in mhsa.modules()) == sum(gma.config.depths)
    outside = {k: v.shape for k, v in gma.state_dict().items() if ".att." not in k}
    assert outside == {k: v.shape for k, v in mhsa.state_dict().items() if ".att." not in k}
    shared = {k: v.shape for k, v in mhsa.state_dict().items() if ".att." in k}
    assert all(
        k.split(".att.")[1] in {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}
        for k in shared
    )
    assert mhsa(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_self_attention_is_softmax_attention_over_all_tokens():
    torch.manual_seed(0)
    attention = SelfAttention(40, num_heads=8).double()
    x = torch.randn(2, 12, 40, dtype=torch.float64)
    q, k, v = attention.qkv(x).chunk(3, dim=-1)
    heads = [
        torch.softmax(
            q[..., h * 5 : (h + 1) * 5] @ k[..., h * 5 : (h + 1) * 5].transpose(1, 2) / 5**0.5, -1
        )
        @ v[..., h * 5 : (h + 1) * 5]
        for h in range(8)
    ]
    expected = attention.proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attention(x, (3, 4)), expected)


def test_margin_is_stated_in_points():
    assert MARGIN == 1.0


@pytest.mark.slow
def test_quick_demo_reports_arms_and_an_honest_verdict(tmp_path):
    from groupmixformer.plugin import METHOD

    result = METHOD.demo(full=False, output_root=tmp_path, progress=False, seed=0)
    assert result.run_dir is not None and (result.run_dir / "metrics.json").exists()
    assert len(result.table.rows) == 3
    assert result.verdicts[0].verdict == "not shown"  # one seed can never show the claim
    assert "quick" in result.verdicts[0].line()
