"""Foundation-model backends (``backends``), the CLIP filter (``clip_filter``) and text embedders
(``embedder``); import the submodules directly."""
