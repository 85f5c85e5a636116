"""``headartist info``: the self score distillation settings of the paper (Sec. 3 and the official
configs) that :class:`headartist.SSDGuidance` takes."""

from __future__ import annotations

from papers_shared.methods import Table

__all__ = ["info"]


def info() -> list[Table]:
    rows = [
        ["geometry", "100", "[0.02, 0.5]", "1.0", '""'],
        ["texture", "7.5", "[0.02, 0.98] -> 0.7 from step 10 000", "1.0", "quality list"],
    ]
    return [
        Table(
            [
                "stage",
                "CFG weight (view-dependent branch)",
                "t range (fraction of 1000)",
                "ControlNet scale",
                "negative prompt",
            ],
            rows,
            title="SSD settings (the paper, Sec. 3 / official configs)",
            notes=["The estimate branch always uses the plain prompt with CFG weight 1."],
        )
    ]
