"""Data-parallel DomainBed training: batch sharding, DDP wrapping rules, mixed precision, and a
2-process gloo run that must match the 1-process run with the same global batch."""

import json
import math
import textwrap

import pytest
import torch

from papers_shared.dg import ERM, InfiniteDataLoader, TrainConfig, load_algorithm, train_algorithm
from papers_shared.distributed import DistContext, run_torchrun

TINY = {"cnn_width": 8, "batch_size": 8}
TWO_RANKS = DistContext(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
ONE_RANK = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def tiny_config(output_dir, **overrides):
    fields = {
        "dataset": "DebugDomains",
        "test_envs": [0],
        "steps": 3,
        "checkpoint_freq": 2,
        "output_dir": str(output_dir) if output_dir else None,
        "hparams": TINY,
        "progress": False,
        "device": "cpu",
    }
    return TrainConfig(**{**fields, **overrides})


def test_sharded_loaders_split_the_same_global_batch():
    data = torch.utils.data.TensorDataset(torch.arange(50), torch.zeros(50))

    def batches(shard, n=4):
        loader = iter(InfiniteDataLoader(data, None, 6, 0, torch.Generator().manual_seed(3), shard))
        return [next(loader)[0] for _ in range(n)]

    full, first, second = batches((0, 1)), batches((0, 2)), batches((1, 2))
    for whole, a, b in zip(full, first, second, strict=True):
        assert torch.equal(a, whole[0::2]) and torch.equal(b, whole[1::2])
    with pytest.raises(ValueError, match="smaller than"):
        InfiniteDataLoader(data, None, 1, shard=(0, 2))
    with pytest.raises(ValueError, match="shard"):
        InfiniteDataLoader(data, None, 4, shard=(2, 2))


def test_distribute_is_a_no_op_in_one_process_and_checks_coverage():
    hparams = {"lr": 1e-3, "weight_decay": 0.0, "cnn_width": 8}
    algorithm = ERM((3, 28, 28), 2, 2, hparams)
    algorithm.distribute(ONE_RANK)
    assert algorithm.parallel("network") is algorithm.network
    assert not any(k.startswith("module.") or ".module." in k for k in algorithm.state_dict())

    class HeadOutside(ERM):
        def ddp_modules(self):
            return ["featurizer"]  # the classifier is optimised but would not be all-reduced

    with pytest.raises(ValueError, match=r"classifier\.weight"):
        HeadOutside((3, 28, 28), 2, 2, hparams).distribute(TWO_RANKS)

    class NoDDP(ERM):
        def ddp_modules(self):
            return []

    with pytest.raises(NotImplementedError, match="ddp_modules"):
        NoDDP((3, 28, 28), 2, 2, hparams).distribute(TWO_RANKS)


def test_bf16_autocast_runs_on_cpu_and_fp16_is_refused():
    dtypes = []

    def factory(*args):
        algorithm = ERM(*args)
        algorithm.classifier.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
        return algorithm

    records, algorithm = train_algorithm(tiny_config(None, steps=2, precision="bf16"), factory)
    assert torch.bfloat16 in dtypes  # training forwards ran under autocast
    assert math.isfinite(records[-1]["loss"])
    assert all(p.dtype == torch.float32 for p in algorithm.parameters())
    with pytest.raises(ValueError, match="CUDA"):
        train_algorithm(tiny_config(None, precision="fp16"))
    with pytest.raises(ValueError, match="precision"):
        tiny_config(None, precision="int8")
    with pytest.warns(DeprecationWarning, match="--precision"):
        assert tiny_config(None, amp="none").precision == "fp32"  # the old spelling


SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist
    from papers_shared.distributed import cleanup_distributed
    from papers_shared.dg import ERM, TrainConfig, check_replicas_in_sync, train_algorithm

    rows = []

    class RowCountingERM(ERM):
        def update(self, minibatches, unlabeled=None):
            rows.append([len(y) for _, y in minibatches])
            return super().update(minibatches, unlabeled)

    out = sys.argv[1]
    dist.init_process_group("gloo")  # a caller-owned group: train_algorithm must leave it open
    cfg = TrainConfig(
        dataset="DebugDomains", test_envs=[0], steps=3, checkpoint_freq=2,
        output_dir=f"{out}/run", hparams=json.loads(sys.argv[2]), progress=False, device="cpu",
    )
    records, algorithm = train_algorithm(cfg, RowCountingERM)
    rank = dist.get_rank()
    print(f"rank {rank} rows {rows[0]}")
    torch.save(algorithm.state_dict(), f"{out}/rank{rank}.pt")
    with open(f"{out}/records{rank}.json", "w") as handle:
        kept = [{k: v for k, v in r.items() if k.endswith(("acc", "loss"))} for r in records]
        json.dump(kept, handle)
    check_replicas_in_sync(algorithm)  # in sync: no error
    if rank == 1:
        with torch.no_grad():
            algorithm.classifier.bias.add_(1.0)
    try:
        check_replicas_in_sync(algorithm)
    except RuntimeError as err:
        print(f"rank {rank} detected: {err}")
    cleanup_distributed()  # collects DDP wrappers before leaving the group
    """
)


@pytest.mark.distributed
@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    script = tmp_path / "ddp_erm.py"
    script.write_text(SCRIPT)
    result = run_torchrun(
        [str(script), str(tmp_path), json.dumps(TINY)], nproc=2, timeout=240, check=True
    )
    assert "rank 1 detected" in result.stdout and "classifier.bias" in result.stdout
    assert "rank 0 detected" in result.stdout
    # each rank trained on its half of every per-domain batch of 8
    assert "rank 0 rows [4, 4]" in result.stdout and "rank 1 rows [4, 4]" in result.stdout

    single_records, single = train_algorithm(tiny_config(tmp_path / "single"))
    expected = single.state_dict()
    for rank in (0, 1):
        state = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert state.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(state[key], value, atol=1e-5, rtol=0, msg=key)
        records = json.loads((tmp_path / f"records{rank}.json").read_text())
        for got, want in zip(records, single_records, strict=True):
            assert got["loss"] == pytest.approx(want["loss"], abs=1e-5)
            assert {k: v for k, v in got.items() if k.endswith("acc")} == {
                k: v for k, v in want.items() if k.endswith("acc")
            }
    run = tmp_path / "run"
    lines = (run / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 2]  # written once, by rank 0
    assert (run / "done").exists()
    loaded = load_algorithm(run / "model.pkl")  # no "module." prefixes: loads as usual
    assert isinstance(loaded, ERM)
