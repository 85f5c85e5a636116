from __future__ import annotations

import pytest
import torch

from papers_shared.testing import block_network  # noqa: F401

# Tiny models: one thread avoids oversubscription when other jobs share the cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_scorer():
    """A seeded tiny random open_clip CLIP (vision width 32, patch 8, image 32; text width 32)."""
    from instructdet.demo import tiny_clip_scorer

    return tiny_clip_scorer(0, image_size=32, width=32)
