"""The CLIP expression filter (paper Sec. 3.1, "expression filter").

``s(J, t) = logit_scale * cos(E_img(J), E_txt(t))`` (CLIP logits, not a softmax). For an object box b,
``I_b`` is a copy of the image with a red ellipse inscribed in b, and

    h(t) = alpha * s(I_b, t) - s(I, t)        (alpha = 2; paper range 1-2)

rewards phrases that match the marked region more than the whole image. With R the object's original
(human) expressions and G the generated phrases not in R, a phrase t in G is kept iff
``h(t) > min_{r in R} h(r) - tau`` (tau = 1.5 logit units, strict). An object with several boxes is
filtered box by box; the survivors of one box are the candidates of the next.

The model is OpenAI's CLIP ViT-B/32 through open_clip as ``ViT-B-32-quickgelu`` (OpenAI weights in the
plain GELU ``ViT-B-32`` give wrong scores), with its standard evaluation transform.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from instructdet.pipeline.local_stage import draw_ellipse

__all__ = ["Scorer", "ClipScorer", "FilterResult", "filter_phrases", "create_clip_scorer"]

logger = logging.getLogger(__name__)


class Scorer(Protocol):
    """Anything that returns one matching logit per text for an image."""

    def scores(self, image: Image.Image, texts: Sequence[str]) -> np.ndarray: ...


class ClipScorer:
    """CLIP logits ``logit_scale * cos`` with cached image and text embeddings.

    Args:
        model: an ``open_clip.CLIP`` (or anything with ``encode_image``, ``encode_text`` and
            ``logit_scale``).
        preprocess: the image transform (PIL -> (3, H, W) tensor).
        tokenizer: texts -> (N, 77) token ids; open_clip's tokenizer truncates at 77 tokens.
        batch_size: texts per forward pass (1 gives the unbatched reference).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Any,
        tokenizer: Any,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        cache_size: int = 8,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model: Any = model.eval().to(device)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._images: OrderedDict[int, tuple[Image.Image, torch.Tensor]] = OrderedDict()
        self._texts: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self.text_forwards = 0
        self.image_forwards = 0

    @property
    def logit_scale(self) -> float:
        scale = self.model.logit_scale
        return float(scale.detach().exp()) if isinstance(scale, torch.Tensor) else float(scale)

    @torch.no_grad()
    def image_features(self, image: Image.Image) -> torch.Tensor:
        """(D,) unit-norm embedding; the last few images are cached (by object identity)."""
        key = id(image)
        hit = self._images.get(key)
        if hit is not None and hit[0] is image:
            self._images.move_to_end(key)
            return hit[1]
        pixels = self.preprocess(image.convert("RGB")).unsqueeze(0).to(self.device)
        dtype = next(self.model.parameters()).dtype
        feats = self.model.encode_image(pixels.to(dtype)).float()[0]
        self.image_forwards += 1
        feats = feats / feats.norm()
        self._images[key] = (image, feats)
        while len(self._images) > self._cache_size:
            self._images.popitem(last=False)
        return feats

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit-norm embeddings, ``batch_size`` texts per forward, cached by string."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            tokens = self.tokenizer(chunk).to(self.device)
            feats = self.model.encode_text(tokens).float()
            self.text_forwards += 1
            feats = feats / feats.norm(dim=-1, keepdim=True)
            for text, feat in zip(chunk, feats):
                self._texts[text] = feat
        while len(self._texts) > 8192:
            self._texts.popitem(last=False)
        if not texts:
            return torch.zeros(0, 1)
        return torch.stack([self._texts[t] for t in texts])

    def scores(self, image: Image.Image, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float64)
        img = self.image_features(image)
        txt = self.text_features(texts)
        return (self.logit_scale * (txt @ img)).double().cpu().numpy()

    def clear_cache(self) -> None:
        self._images.clear()
        self._texts.clear()


def create_clip_scorer(
    model_name: str = "ViT-B-32-quickgelu",
    pretrained: str | Path | None = "openai",
    *,
    device: str = "cpu",
    batch_size: int = 64,
) -> ClipScorer:
    """Build the filter's CLIP with open_clip: a pretrained tag (``openai``) or a local file.

    A local OpenAI TorchScript ``ViT-B-32.pt`` is accepted as ``pretrained=path``. ``None`` gives a
    randomly initialised model (tests, offline demos).
    """
    import open_clip

    if model_name == "ViT-B-32" and pretrained == "openai":
        raise ValueError(
            "OpenAI CLIP weights need the QuickGELU model: use 'ViT-B-32-quickgelu' "
            "(the plain 'ViT-B-32' silently gives wrong scores)"
        )
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=str(pretrained) if pretrained is not None else None, device=device
    )
    tokenizer = open_clip.get_tokenizer(model_name)
    return ClipScorer(model, preprocess, tokenizer, device=device, batch_size=batch_size)


class FilterResult:
    """Kept and dropped phrases of one filter call."""

    def __init__(self, kept: list[str], dropped: list[str]) -> None:
        self.kept = kept
        self.dropped = dropped

    def __repr__(self) -> str:
        return f"FilterResult(kept={self.kept!r}, dropped={self.dropped!r})"


def filter_phrases(
    scorer: Scorer,
    image: Image.Image,
    boxes: Sequence[Sequence[float]],
    references: Sequence[str],
    generated: Sequence[str],
    *,
    alpha: float = 2.0,
    tolerance: float = 1.5,
    inclusive_lower: bool = False,
) -> FilterResult:
    """Keep the generated phrases that match each box at least as well as the references, minus tau.

    Args:
        image: the full image (never modified).
        boxes: the object's COCO boxes (x, y, w, h); filtered one after the other.
        references: the object's original expressions R (never filtered).
        generated: candidate phrases; those equal to a reference leave the list (neither kept
            nor dropped).
    """
    refs = list(dict.fromkeys(references))
    ref_set = set(refs)
    candidates = [t for t in dict.fromkeys(generated) if t not in ref_set]
    if not candidates:
        return FilterResult([], [])
    if not refs:
        logger.info("object without reference expressions: keeping all %d phrases", len(candidates))
        return FilterResult(candidates, [])
    dropped: list[str] = []
    for box in boxes:
        if not candidates:
            break
        texts = refs + candidates
        marked = draw_ellipse(image, box, inclusive_lower=inclusive_lower)
        h = alpha * np.asarray(scorer.scores(marked, texts), dtype=np.float64) - np.asarray(
            scorer.scores(image, texts), dtype=np.float64
        )
        threshold = float(h[: len(refs)].min()) - tolerance
        survivors = []
        for text, value in zip(candidates, h[len(refs) :]):
            (survivors if value > threshold else dropped).append(text)
        candidates = survivors
    return FilterResult(candidates, dropped)
