import torch

from papers_shared.counting import count_flops


def test_fused_multi_head_attention_is_counted_like_the_unfused_path():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(64, 4, batch_first=True)
    x = torch.randn(2, 10, 64)
    fused = count_flops(lambda: mha.eval()(x, x, x, need_weights=False))
    unfused = count_flops(lambda: mha.train()(x, x, x, need_weights=False))  # no dropout: p = 0
    # by hand: q/k/v projections 3 * B*L*E*E, QK^T and AV 2 * B*L*L*E, output B*L*E*E
    b, n, e = 2, 10, 64
    expected = 3 * b * n * e * e + 2 * b * n * n * e + b * n * e * e
    assert "aten._native_multi_head_attention" in fused.by_operator
    assert fused.total == unfused.total == expected
