import pickle

import pytest
import torch
from torch import nn

from papers_shared.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    load_state_dict_checked,
    read_state_dict,
    save_safetensors,
)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_safetensors_round_trip(tmp_path):
    model = small_model()
    path = save_safetensors(model.state_dict(), tmp_path / "m.safetensors", metadata={"arch": "x"})
    state = read_state_dict(path)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    load_state_dict_checked(fresh, state)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_torch_containers_and_prefixes_are_unwrapped(tmp_path, suffix):
    model = small_model()
    wrapped = {"epoch": 3, "model": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / f"ckpt{suffix}")
    state = read_state_dict(tmp_path / f"ckpt{suffix}")
    assert set(state) == set(model.state_dict())


def test_key_map_is_applied(tmp_path):
    model = small_model()
    torch.save(
        {"state_dict": {f"old.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "a.pth"
    )
    state = read_state_dict(
        tmp_path / "a.pth", key_map=lambda sd: {k[4:]: v for k, v in sd.items()}
    )
    load_state_dict_checked(small_model(), state)


def test_mismatch_reports_every_problem_at_once():
    model = small_model()
    state = dict(model.state_dict())
    state.pop("0.bias")
    state["extra.weight"] = torch.zeros(1)
    state["2.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_dict_checked(model, state)
    report = info.value.report
    assert report.missing == ["0.bias"] and report.unexpected == ["extra.weight"]
    assert report.shape_mismatch == [("2.weight", (3, 3), (2, 4))]
    message = str(info.value)
    assert "0.bias" in message and "extra.weight" in message and "2.weight" in message


def test_allowed_prefixes_are_tolerated_and_reported():
    model = small_model()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("2.")}
    state["head.weight"] = torch.zeros(2)
    report = load_state_dict_checked(model, state, allow_missing=["2."], allow_unexpected=["head."])
    assert report.missing == ["2.weight", "2.bias"] and report.unexpected == ["head.weight"]


def test_not_a_checkpoint_gives_clear_error(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        read_state_dict(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")


class NeedsCode:
    def __init__(self) -> None:
        self.weight = torch.zeros(2)


def test_pickle_that_needs_code_is_refused(tmp_path):
    torch.save({"model": NeedsCode()}, tmp_path / "obj.pth", pickle_module=pickle)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(tmp_path / "obj.pth")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_state_dict(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="directory"):
        read_state_dict(tmp_path)


def test_container_without_tensors(tmp_path):
    torch.save({"epoch": 1, "args": {"lr": 0.1}}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="no tensors"):
        read_state_dict(tmp_path / "meta.pth")


def test_garbage_pickle_is_not_called_code(tmp_path):
    (tmp_path / "g.pth").write_bytes(b"\x80\x04garbage that is no pickle")
    with pytest.raises(CheckpointError) as info:
        read_state_dict(tmp_path / "g.pth")
    assert "need code" not in str(info.value)
