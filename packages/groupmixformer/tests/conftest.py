import pytest
import torch
from groupmixformer import GroupMixFormer

from papers_shared.testing import block_network  # noqa: F401

TINY = {"embed_dims": (40, 40, 40, 40), "depths": (1, 1, 1, 1), "num_classes": 4}


@pytest.fixture
def tiny_model() -> GroupMixFormer:
    torch.manual_seed(0)
    return GroupMixFormer(**TINY, drop_path_rate=0.0)


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    """The test machine is shared: one intra-op thread avoids oversubscription stalls."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
