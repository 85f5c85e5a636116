import argparse
import io
import logging
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from papers_shared.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    closest_variant,
    load_state_dict_checked,
    read_checkpoint,
    read_state_dict,
    save_safetensors,
    unwrap_state_dict,
)


def small_model(seed: int = 0, width: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, width), nn.BatchNorm1d(width), nn.Linear(width, 2))


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key, value in sa.items():
        assert torch.equal(sb[key], value), key


def test_safetensors_round_trip(tmp_path):
    model = small_model()
    path = save_safetensors(model.state_dict(), tmp_path / "m.safetensors", metadata={"arch": "x"})
    fresh = small_model(seed=1)
    load_state_dict_checked(fresh, read_state_dict(path))
    assert_same_weights(model, fresh)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_torch_containers_and_prefixes_are_unwrapped(tmp_path, suffix):
    model = small_model()
    wrapped = {"epoch": 3, "model": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / f"ckpt{suffix}")
    fresh = small_model(seed=1)
    load_state_dict_checked(fresh, read_state_dict(tmp_path / f"ckpt{suffix}"))
    assert_same_weights(model, fresh)


def test_key_map_is_applied(tmp_path):
    model = small_model()
    torch.save(
        {"state_dict": {f"old.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "a.pth"
    )
    state = read_state_dict(
        tmp_path / "a.pth", key_map=lambda sd: {k.removeprefix("old."): v for k, v in sd.items()}
    )
    fresh = small_model(seed=1)  # different weights, so a load that does nothing is caught
    load_state_dict_checked(fresh, state)
    assert_same_weights(model, fresh)


@pytest.mark.parametrize("container", ["model", "state_dict", "module"])
def test_in_memory_wrapped_state_dict_is_unwrapped(container):
    model = small_model()
    state = unwrap_state_dict({container: model.state_dict(), "epoch": 1})
    assert set(state) == set(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_in_memory_non_mapping_is_refused():
    with pytest.raises(CheckpointError, match="holds a list, expected a state dict"):
        unwrap_state_dict([torch.zeros(1)])


def _official_script_file(path, args):
    """What DyT-style training scripts write: weights beside optimizer state and arguments."""
    model = small_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": 3,
            "args": args,
            "max_accuracy": np.float64(81.5),
            "seen_classes": np.arange(5),
        },
        path,
    )
    return model


def test_official_script_file_with_namespace_args_loads(tmp_path):
    args = argparse.Namespace(lr=1e-3, model="vit_base_patch16_224", drop_path=0.1, tags=["a"])
    model = _official_script_file(tmp_path / "checkpoint.pth", args)
    fresh = small_model(seed=1)
    load_state_dict_checked(fresh, read_state_dict(tmp_path / "checkpoint.pth"))
    assert_same_weights(model, fresh)
    raw = read_checkpoint(tmp_path / "checkpoint.pth")
    assert isinstance(raw, dict)
    assert raw["args"] == args and raw["epoch"] == 3
    assert raw["max_accuracy"] == pytest.approx(81.5)
    assert np.array_equal(raw["seen_classes"], np.arange(5))


def _rename_globals(path, old: bytes, new: bytes) -> None:
    """Rewrite a torch zip's pickle so its GLOBAL opcodes name ``old`` modules as ``new``."""
    with zipfile.ZipFile(path) as source:
        records = {info.filename: source.read(info) for info in source.infolist()}
    pickle_name = next(n for n in records if n.endswith("data.pkl"))
    assert old in records[pickle_name]
    records[pickle_name] = records[pickle_name].replace(old, new)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as target:
        for name, data in records.items():
            target.writestr(name, data)
    path.write_bytes(buffer.getvalue())


def test_numpy_arrays_saved_by_numpy_1_load(tmp_path):
    torch.save({"model": small_model().state_dict(), "stats": np.ones(3)}, tmp_path / "old.pth")
    _rename_globals(tmp_path / "old.pth", b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    raw = read_checkpoint(tmp_path / "old.pth")
    assert isinstance(raw, dict) and np.array_equal(raw["stats"], np.ones(3))


class EasyDict(dict):
    """Like easydict.EasyDict: items are also attributes. Counts how often it is constructed."""

    constructed = 0

    def __new__(cls, *args, **kwargs):
        EasyDict.constructed += 1
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key, value in self.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        object.__setattr__(self, key, value)
        self[key] = value


def test_easydict_args_are_dropped_without_running_their_class(tmp_path, caplog):
    args = EasyDict(lr=0.1, model="vit", opt=EasyDict(name="adamw", betas=[0.9, 0.999]))
    model = _official_script_file(tmp_path / "checkpoint.pth", args)
    before = EasyDict.constructed
    with caplog.at_level(logging.INFO, logger="papers_shared.checkpoint"):
        raw = read_checkpoint(tmp_path / "checkpoint.pth")
    assert EasyDict.constructed == before
    assert isinstance(raw, dict) and "args" not in raw and raw["epoch"] == 3
    assert "args" in caplog.text and "EasyDict" in caplog.text
    fresh = small_model(seed=1)
    load_state_dict_checked(fresh, read_state_dict(tmp_path / "checkpoint.pth"))
    assert_same_weights(model, fresh)


def _touch(path: str) -> None:
    with open(path, "w") as handle:
        handle.write("code from the checkpoint ran")


class RunsCodeOnLoad:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


def test_code_in_a_pickle_never_runs_without_trust(tmp_path, caplog):
    marker = tmp_path / "ran.txt"
    model = small_model()
    torch.save(
        {"model": model.state_dict(), "hook": RunsCodeOnLoad(str(marker))}, tmp_path / "x.pth"
    )
    state = read_state_dict(tmp_path / "x.pth")
    assert not marker.exists()
    assert set(state) == set(model.state_dict())
    with caplog.at_level(logging.WARNING, logger="papers_shared.checkpoint"):
        read_checkpoint(tmp_path / "x.pth", trust_checkpoint=True)
    assert marker.exists()  # trust really unpickles everything ...
    assert "trust_checkpoint=True" in caplog.text  # ... and says so


class NeedsCode:
    def __init__(self, state: dict) -> None:
        self.weights = state


def test_weights_inside_an_unknown_class_give_one_clear_line(tmp_path):
    torch.save({"model": NeedsCode(small_model().state_dict())}, tmp_path / "obj.pth")
    with pytest.raises(CheckpointError) as info:
        read_state_dict(tmp_path / "obj.pth")
    message = str(info.value)
    assert "NeedsCode" in message and "model" in message and "--trust-checkpoint" in message
    assert "weights_only" not in message and "\n" not in message


def test_trusted_unknown_container_loads_with_a_warning(tmp_path, caplog):
    model = small_model()
    torch.save({"model": EasyDict(model.state_dict())}, tmp_path / "trusted.pth")
    with pytest.raises(CheckpointError, match="EasyDict"):
        read_state_dict(tmp_path / "trusted.pth")
    with caplog.at_level(logging.WARNING, logger="papers_shared.checkpoint"):
        state = read_state_dict(tmp_path / "trusted.pth", trust_checkpoint=True)
    assert "full unpickling" in caplog.text
    fresh = small_model(seed=1)
    load_state_dict_checked(fresh, state)
    assert_same_weights(model, fresh)


def test_legacy_torch_format_loads(tmp_path):
    model = small_model()
    torch.save(model.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    fresh = small_model(seed=1)
    load_state_dict_checked(fresh, read_state_dict(tmp_path / "legacy.pth"))
    assert_same_weights(model, fresh)


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


def test_mismatch_message_is_one_short_line_naming_the_variant():
    big = {f"blocks.{i}.weight": torch.zeros(2) for i in range(3000)}
    variants = {"tiny": small_model().state_dict(), "wide": small_model(width=8).state_dict()}
    state = {**small_model(width=8).state_dict(), **big}
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_dict_checked(small_model(), state, expected="tiny", variants=variants)
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000
    assert "3000 unexpected key(s)" in message and "it looks like wide" in message
    assert "does not match tiny" in message
    assert message.count("blocks.") == 5


def test_closest_variant_picks_the_best_match_or_none():
    variants = {"tiny": small_model().state_dict(), "wide": small_model(width=8).state_dict()}
    assert closest_variant(small_model().state_dict(), variants) == "tiny"
    assert closest_variant(small_model(width=8).state_dict(), variants) == "wide"
    assert closest_variant({"other": torch.zeros(1)}, variants) is None


def test_allowed_prefixes_are_tolerated_and_reported():
    model = small_model()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("2.")}
    state["head.weight"] = torch.zeros(2)
    report = load_state_dict_checked(model, state, allow_missing=["2."], allow_unexpected=["head."])
    assert report.missing == ["2.weight", "2.bias"] and report.unexpected == ["head.weight"]


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"this is not a checkpoint at all", "text file"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "HTML page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n", "Git LFS pointer"),
        (b"", "empty file"),
        (b"\x80\x04garbage that is no pickle", "pickle"),
        (b"junk", "text file"),
        (bytes(range(256)) * 3, "binary file"),
        (b"PK\x03\x04 truncated zip", "zip archive"),
    ],
)
def test_not_a_checkpoint_says_what_the_file_is(tmp_path, content, looks_like):
    (tmp_path / "junk.pth").write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(tmp_path / "junk.pth")
    message = str(info.value)
    assert looks_like in message and "expected a torch checkpoint" in message
    assert "weights_only" not in message and "\n" not in message
    assert "need code" not in message and "needs code" not in message


def test_bad_safetensors_says_what_was_expected(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="expected a safetensors file"):
        read_state_dict(tmp_path / "junk.safetensors")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_state_dict(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="directory"):
        read_state_dict(tmp_path)


def test_container_without_tensors(tmp_path):
    torch.save({"epoch": 1, "args": {"lr": 0.1}}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="no tensors"):
        read_state_dict(tmp_path / "meta.pth")
