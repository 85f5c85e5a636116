import hashlib
import json
import socket

import numpy as np
import pytest
import torch
from torch import nn

from papers_shared import (
    count_flops,
    count_parameters,
    parse_shard,
    seed_everything,
    seed_hash,
    take_shard,
)
from papers_shared.runs import make_run_dir, plot_curves, write_metrics


def test_seed_everything_makes_torch_and_numpy_repeatable():
    seed_everything(3)
    a = torch.rand(4), np.random.rand(2)
    gen = seed_everything(3)
    b = torch.rand(4), np.random.rand(2)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert isinstance(gen, torch.Generator)


def test_seed_everything_rejects_non_int():
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything(1.5)  # type: ignore[arg-type]


def test_seed_hash_is_md5_of_the_argument_tuple():
    expected = int(hashlib.md5(b"(1, 'x')").hexdigest(), 16) % 2**31
    assert seed_hash(1, "x") == expected
    assert seed_hash(1, "x") != seed_hash("x", 1)


def test_linear_flops_are_multiply_adds():
    model = nn.Linear(7, 5)
    assert count_flops(model, torch.randn(3, 7)).total == 3 * 7 * 5


def test_conv_flops_match_hand_count():
    model = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    flops = count_flops(model, torch.randn(2, 3, 10, 10))
    out_hw = 5 * 5
    assert flops.total == 2 * 8 * 3 * 3 * 3 * out_hw


def test_flops_by_module_split():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    flops = count_flops(model, torch.randn(1, 4))
    assert flops.by_module["Sequential.0"] == 24 and flops.by_module["Sequential.2"] == 12
    assert flops.total == 36 and abs(flops.gflops - 36e-9) < 1e-15


def test_parameter_count_trainable_and_shared():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, shared, nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    count = count_parameters(model)
    assert count.total == 20 + 10
    assert count.trainable == 20 + 2 and count.frozen == 8


def test_parameter_count_on_meta_device():
    with torch.device("meta"):
        model = nn.Linear(1000, 1000)
    assert count_parameters(model).total == 1_001_000


@pytest.mark.parametrize("text,expected", [("0/1", (0, 1)), ("3/4", (3, 4))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "a/2", "1", "-1/2", "1/0"])
def test_parse_shard_rejects_bad_values(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_shards_partition_the_items():
    items = list(range(10))
    shards = [take_shard(items, i, 3) for i in range(3)]
    assert sorted(sum(shards, [])) == items and shards[0] == [0, 3, 6, 9]


def test_run_dir_metrics_and_plot(tmp_path):
    run = make_run_dir("pkg", tmp_path, name="x")
    again = make_run_dir("pkg", tmp_path, name="x")
    assert run != again and run.parent == again.parent
    path = write_metrics(
        run, {"acc": np.float32(0.5), "t": torch.tensor(2.0), "nested": {"a": [1, 2]}}
    )
    assert json.loads(path.read_text()) == {"acc": 0.5, "t": 2.0, "nested": {"a": [1, 2]}}
    png = plot_curves({"a": [1, 2, 3], "b": ([0, 2], [3, 1])}, run / "curve.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_curves({}, run / "empty.png")


def test_network_is_blocked_in_tests():
    with pytest.raises(RuntimeError, match="network"):
        socket.create_connection(("203.0.113.1", 80), timeout=1)


def test_cpu_fused_attention_is_counted():
    q = torch.randn(2, 4, 16, 8)
    flops = count_flops(torch.nn.functional.scaled_dot_product_attention, q, q, q)
    # QK^T and (attn)V: 2 * B*H*L*L*d multiply-adds
    assert flops.total == 2 * 2 * 4 * 16 * 16 * 8


def test_layer_norm_counts_five_per_element_once():
    x = torch.randn(2, 3, 6)
    assert count_flops(nn.LayerNorm(6), x).total == 5 * 36
    assert count_flops(nn.LayerNorm(6, elementwise_affine=False), x).total == 4 * 36
    # a block with two LayerNorms and a linear: each norm once, plus the multiply-adds
    block = nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 4), nn.LayerNorm(4))
    assert count_flops(block, x).total == 5 * 36 + 6 * 4 * 6 + 5 * 24


def test_batch_norm_counts_follow_fvcore():
    x = torch.randn(2, 4, 5, 5)
    bn = nn.BatchNorm2d(4)
    assert count_flops(bn.eval(), x).total == 2 * x.numel()
    assert count_flops(bn.train(), x).total == 5 * x.numel()
    assert count_flops(nn.GroupNorm(2, 4), x).total == 5 * x.numel()


def test_upsampling_and_adaptive_pooling_counts():
    x = torch.randn(2, 4, 5, 5)
    assert count_flops(nn.Upsample(scale_factor=2), x).total == 2 * 4 * 10 * 10
    assert count_flops(nn.Upsample(size=(7, 7), mode="bilinear"), x).total == 2 * 4 * 49
    assert count_flops(nn.AdaptiveAvgPool2d(2), x).total == x.numel()


def test_activations_and_residual_adds_count_zero():
    x = torch.randn(3, 8)
    assert count_flops(lambda t: torch.relu(t).softmax(-1) + t, x).total == 0


def test_flop_convention_header_names_the_convention():
    from papers_shared.counting import FLOP_CONVENTION

    assert "one multiply-add = one FLOP" in FLOP_CONVENTION and "fvcore" in FLOP_CONVENTION
