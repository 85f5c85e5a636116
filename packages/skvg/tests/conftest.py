import torch

from papers_shared.testing import block_network  # noqa: F401

# Tiny models: one thread avoids oversubscription when other jobs share the cores.
torch.set_num_threads(1)
