"""Text embedders for clustering objects by their expressions (paper Sec. 3.2, D2).

The paper embeds ``", ".join(phrases)`` of each object with bert-base-uncased's pooler output (the
[CLS] state through the dense + tanh head, 768-d, inputs truncated at 512 tokens) and clusters with
DBSCAN. :class:`HashingEmbedder` is a dependency-free, deterministic stand-in (bag of hashed word
counts) for offline runs; its distances are on another scale, so DBSCAN's eps must fit it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from instructdet.pipeline.global_stage import STOP_WORDS

__all__ = ["Embedder", "BertPoolerEmbedder", "HashingEmbedder"]


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float array, one row per text."""
        ...


class BertPoolerEmbedder:
    """BERT pooler outputs through transformers (``bert-base-uncased`` by name or local path)."""

    def __init__(
        self, model: Any, tokenizer: Any, *, device: str = "cpu", max_length: int = 512
    ) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = "bert-base-uncased", *, device: str = "cpu"
    ) -> BertPoolerEmbedder:
        try:
            from transformers import AutoTokenizer, BertModel
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the BERT embedder needs transformers: pip install 'instructdet[hf]'"
            ) from err
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        model = BertModel.from_pretrained(str(name_or_path))
        return cls(model, tokenizer, device=device)

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, int(self.model.config.hidden_size)))
        rows = []
        for text in texts:  # one object at a time, as the paper does (no padding effects)
            inputs = self.tokenizer(
                text, return_tensors="pt", truncation=True, max_length=self.max_length
            ).to(self.device)
            rows.append(self.model(**inputs).pooler_output[0].float().cpu().numpy())
        return np.stack(rows).astype(np.float64)


class HashingEmbedder:
    """Unit-length counts of words hashed into ``dim`` buckets (lower-cased, stop words removed).

    Euclidean distance between two rows is sqrt(2 - 2 cos), at most sqrt(2); an eps near 1
    groups texts whose word-count cosine exceeds about 0.5.
    """

    STOP = STOP_WORDS | {"left", "right"}

    def __init__(self, dim: int = 256) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim))
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                if word in self.STOP:
                    continue
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim
                out[row, bucket] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)
