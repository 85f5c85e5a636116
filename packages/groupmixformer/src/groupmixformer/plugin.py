"""``papers`` plugin: ``info()`` (params/FLOPs per variant beside the paper) and ``demo()``.

Both are imported on first call, so that discovering the plugin stays cheap."""

from __future__ import annotations

from papers_shared.methods import lazy_method

__all__ = ["METHOD"]

METHOD = lazy_method(
    "groupmixformer",
    "Advancing Vision Transformers with Group-Mix Attention (GroupMixFormer)",
    info="groupmixformer.info:info",
    demo="groupmixformer.demo:demo",
)
