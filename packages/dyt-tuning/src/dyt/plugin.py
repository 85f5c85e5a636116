"""The ``papers.methods`` entry point of dyt-tuning."""

from dyt.demo import demo
from dyt.info import info
from papers_shared.methods import Method

METHOD = Method(
    name="dyt-tuning",
    title="DyT: Dynamic Tuning for parameter- and inference-efficient ViT adaptation (NeurIPS 2024)",
    info=info,
    demo=demo,
)
