"""The ``papers`` plugin entry point of ``ridg``."""

from __future__ import annotations

from papers_shared.methods import Method
from ridg.demo import demo, info

METHOD = Method(
    name="ridg",
    title="Domain Generalization via Rationale Invariance (ICCV 2023)",
    info=info,
    demo=demo,
)
