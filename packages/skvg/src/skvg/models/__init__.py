"""KeViLI, TransVG and LeViLM (``kevili``, ``levilm``), their layers, visual and text encoders."""
