"""Sharding, data loaders, peak memory and the lazy package namespace."""

import argparse
import subprocess
import sys

import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler, TensorDataset

from papers_shared.data_loading import build_dataloader, build_sampler, set_loader_epoch
from papers_shared.memory import measure_peak_memory
from papers_shared.sharding import parse_shard, shard_arg, take_shard


def test_shard_index_is_zero_based_and_the_error_says_so():
    assert parse_shard("0/4") == (0, 4) and parse_shard("3/4") == (3, 4)
    with pytest.raises(ValueError, match=r"0-based: 0 <= i < n, got 4/4 \(valid: 0/4 \.\.\. 3/4\)"):
        parse_shard("4/4")
    with pytest.raises(ValueError, match="n must be >= 1"):
        parse_shard("0/0")
    with pytest.raises(ValueError, match="'i/n' with whole numbers"):
        parse_shard("1 of 4")


def test_shard_arg_gives_argparse_a_usage_error(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--shard", type=shard_arg, default=(0, 1))
    assert parser.parse_args(["--shard", "2/3"]).shard == (2, 3)
    with pytest.raises(SystemExit):
        parser.parse_args(["--shard", "3/3"])
    assert "0-based" in capsys.readouterr().err


def test_take_shard_rejects_an_index_out_of_range():
    with pytest.raises(ValueError, match="0-based"):
        take_shard([1, 2, 3], 3, 3)


def _dataset(n=10):
    return TensorDataset(torch.arange(n).float())


def test_loader_shuffle_is_seeded():
    first = [b[0].tolist() for b in build_dataloader(_dataset(), 4, shuffle=True, seed=3)]
    again = [b[0].tolist() for b in build_dataloader(_dataset(), 4, shuffle=True, seed=3)]
    other = [b[0].tolist() for b in build_dataloader(_dataset(), 4, shuffle=True, seed=4)]
    assert first == again and first != other
    assert sorted(sum(first, [])) == list(range(10))


def test_sampler_kinds():
    assert isinstance(build_sampler(_dataset(), shuffle=True), RandomSampler)
    assert isinstance(build_sampler(_dataset(), shuffle=False), SequentialSampler)
    with pytest.raises(ValueError, match="process group"):
        build_sampler(_dataset(), shuffle=True, distributed=True)


def test_loader_validates_its_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        build_dataloader(_dataset(), 0)
    with pytest.raises(ValueError, match="num_workers"):
        build_dataloader(_dataset(), 2, num_workers=-1)


def test_set_loader_epoch_is_a_no_op_without_set_epoch():
    loader = build_dataloader(_dataset(), 2)
    set_loader_epoch(loader, 3)  # SequentialSampler has no set_epoch


def test_cpu_peak_memory_sees_a_large_allocation():
    with measure_peak_memory("cpu", interval=0.0005) as meter:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, alive at the block's end: no sampling luck
        block.add_(1)
    result = meter.result
    del block
    assert result.extra_mib > 32 and result.method.startswith("rss")


def test_peak_memory_refuses_unknown_devices_and_early_reads():
    with pytest.raises(ValueError, match="cpu and cuda"):
        measure_peak_memory("meta")
    meter = measure_peak_memory("cpu")
    with pytest.raises(RuntimeError, match="after the with-block"):
        _ = meter.result


def test_importing_the_package_does_not_load_torch():
    code = (
        "import sys, papers_shared, papers_shared.cli; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "papers_shared.TrainerConfig; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_public_name_resolves():
    import papers_shared

    for name in papers_shared.__all__:
        assert getattr(papers_shared, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = papers_shared.nope


def test_all_lists_exactly_the_lazy_names():
    import papers_shared

    assert set(papers_shared.__all__) - {"__version__"} == set(papers_shared._MODULE_OF)


def test_plot_curves_reads_a_two_point_tuple_as_values(tmp_path):
    from papers_shared.runs import plot_curves

    path = plot_curves({"ys": (1.0, 2.0), "xy": ([0, 5, 9], [3.0, 2.0, 1.0])}, tmp_path / "c.png")
    assert path.stat().st_size > 0
