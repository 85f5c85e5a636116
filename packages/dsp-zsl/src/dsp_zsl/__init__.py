"""DSP: dynamic semantic prototypes evolving around generative zero-shot learning models."""
