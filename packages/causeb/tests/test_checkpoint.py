import re

import pytest
import torch
from causeb import CausEB, CauseEB
from causeb.convert import load_domainbed_checkpoint

from papers_shared.checkpoint import CheckpointError, CheckpointMismatchError
from papers_shared.dg import load_algorithm

SMALL_SHAPE = (2, 16, 16)

# The official model_dict layout (spec), as regular expressions over key names.
OFFICIAL_PATTERNS = [
    r"base\.network\.(conv1|bn1|layer1\.\d+\.\w+(\.\d)?)\.\w+",
    r"featurizer_class\.network\.layer[234]\.\d+\..+",
    r"featurizer_domains\.network\.layer[234]\.\d+\..+",
    r"classifier_class\.(weight|bias)",
    r"classifier_domains\.(input|hiddens\.\d+|output)\.(weight|bias)",
    r"cdpl\.[036]\.(weight|bias)",
    r"cdpl\.[147]\.(weight|bias|running_mean|running_var|num_batches_tracked)",
]


def _official_resnet18_state_dict(reference: CauseEB) -> dict[str, torch.Tensor]:
    """A synthetic official ``model_dict``: the official key names, random values."""
    g = torch.Generator().manual_seed(0)
    return {
        k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
        for k, v in reference.state_dict().items()
    }


def test_official_resnet18_key_layout_loads_strictly(resnet_causeb):
    state = _official_resnet18_state_dict(resnet_causeb)
    assert len(state) == 239
    for key in state:
        assert any(re.fullmatch(p, key) for p in OFFICIAL_PATTERNS), key
    fresh = CauseEB((3, 72, 72), 5, 3, {"resnet_pretrained": False})
    fresh.load_state_dict(state, strict=True)
    torch.testing.assert_close(fresh.cdpl[0].weight, state["cdpl.0.weight"])
    torch.testing.assert_close(
        fresh.featurizer_domains.network.layer4[1].conv2.weight,
        state["featurizer_domains.network.layer4.1.conv2.weight"],
    )


def _domainbed_checkpoint(path, algorithm: CauseEB, name: str) -> None:
    torch.save(
        {
            "args": {"algorithm": name, "dataset": "RotatedDigits"},
            "model_input_shape": list(algorithm.input_shape),
            "model_num_classes": algorithm.num_classes,
            "model_num_domains": algorithm.num_domains,
            "model_hparams": {
                k: v for k, v in algorithm.hparams.items() if not k.startswith("mlp_")
            },
            "model_dict": algorithm.state_dict(),
        },
        path,
    )


@pytest.mark.parametrize("name", ["CauseEB", "CausEB"])
def test_domainbed_checkpoint_round_trip_under_both_spellings(tmp_path, name):
    algorithm = CauseEB(SMALL_SHAPE, 4, 2, {"cnn_width": 16}).eval()
    _domainbed_checkpoint(tmp_path / "model.pkl", algorithm, name)
    loaded = load_domainbed_checkpoint(tmp_path / "model.pkl").eval()
    x = torch.randn(3, *SMALL_SHAPE)
    torch.testing.assert_close(loaded.predict(x), algorithm.predict(x))
    assert loaded.hparams["mlp_width"] == 256  # missing upstream: our default
    # The shared harness loader finds the class by either spelling too.
    harness_loaded = load_algorithm(tmp_path / "model.pkl")
    assert isinstance(harness_loaded, CauseEB)
    assert CausEB.__mro__[1] is CauseEB


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_domainbed_checkpoint(tmp_path / "missing.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a checkpoint")
    with pytest.raises(
        CheckpointError, match="junk.pkl is a text file .* expected a torch checkpoint"
    ):
        load_domainbed_checkpoint(tmp_path / "junk.pkl")
    torch.save({"state_dict": {}}, tmp_path / "plain.pkl")
    with pytest.raises(CheckpointError, match="not a DomainBed checkpoint"):
        load_domainbed_checkpoint(tmp_path / "plain.pkl")
    algorithm = CauseEB(SMALL_SHAPE, 4, 2, {"cnn_width": 16})
    _domainbed_checkpoint(tmp_path / "erm.pkl", algorithm, "ERM")
    with pytest.raises(CheckpointError, match="expected one of"):
        load_domainbed_checkpoint(tmp_path / "erm.pkl")
    _domainbed_checkpoint(tmp_path / "bad.pkl", algorithm, "CauseEB")
    checkpoint = torch.load(tmp_path / "bad.pkl", weights_only=True)
    del checkpoint["model_dict"]["cdpl.0.weight"]
    torch.save(checkpoint, tmp_path / "bad.pkl")
    with pytest.raises(CheckpointMismatchError, match=r"cdpl\.0\.weight"):
        load_domainbed_checkpoint(tmp_path / "bad.pkl")
