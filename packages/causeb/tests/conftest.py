import pytest
import torch
from causeb import CauseEB

from papers_shared.testing import block_network  # noqa: F401

# Large enough (> 64) for the harness's ResNet path, small enough to be fast on CPU.
RESNET_SHAPE = (3, 72, 72)
TINY_RESNET = {"resnet_pretrained": False, "resnet18": True, "lr": 1e-3}


@pytest.fixture(scope="module")
def resnet_causeb() -> CauseEB:
    """A ResNet-18 CauseEB for (3, 72, 72) images, K=5 classes, M=3 domains (no download)."""
    torch.manual_seed(0)
    return CauseEB(RESNET_SHAPE, 5, 3, TINY_RESNET)


@pytest.fixture
def make_batches():
    """``make_batches(num_domains, per_domain, shape, num_classes)`` -> DomainBed minibatches."""

    def make(num_domains=3, per_domain=4, shape=RESNET_SHAPE, num_classes=5, seed=0):
        g = torch.Generator().manual_seed(seed)
        return [
            (
                torch.randn(per_domain, *shape, generator=g),
                torch.randint(0, num_classes, (per_domain,), generator=g),
            )
            for _ in range(num_domains)
        ]

    return make
