import pytest
import torch

from papers_shared.testing import block_network  # noqa: F401


def _make_ids(batch: int = 2, length: int = 8, seed: int = 0) -> torch.Tensor:
    """Token ids shaped like the tokenizer's: SOT, words, EOT (largest id), zero padding."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(batch, length, dtype=torch.long)
    for b in range(batch):
        n = int(torch.randint(1, length - 1, (1,), generator=gen))
        ids[b, 0] = 49406
        ids[b, 1 : n + 1] = torch.randint(1, 40000, (n,), generator=gen)
        ids[b, n + 1] = 49407
    return ids


def _tiny(kind: str = "rn", seed: int = 0, **overrides):
    from etris.models import create_etris

    torch.manual_seed(seed)
    return create_etris(f"etris_test_{kind}", **overrides)


@pytest.fixture
def make_ids():
    return _make_ids


@pytest.fixture
def tiny():
    return _tiny


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
