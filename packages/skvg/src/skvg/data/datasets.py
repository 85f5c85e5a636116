"""PyTorch datasets over SK-VG records for KeViLI and LeViLM, and their collate function."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from skvg.augment import eval_transform, train_transform
from skvg.boxes import release_to_xyxy
from skvg.data.linguistic import entity_token_mask, target_mentions

__all__ = ["GroundingDataset", "collate"]


class GroundingDataset(torch.utils.data.Dataset):
    """Records + images -> letterboxed tensors, token ids and (for LeViLM) proposals.

    Args:
        records: release records of one split.
        images_dir: folder of the images.
        tokenizer: a transformers tokenizer (fast, for LeViLM's character offsets).
        mode: "kevili" (query and knowledge tokenised apart) or "levilm" ("<query>. <knowledge>"
            with the target entity's token mask, plus proposals).
        train: TransVG's training augmentation (KeViLI only; LeViLM proposals stay aligned under the
            evaluation letterbox).
        use_knowledge: False blanks every passage (the query-only baseline).
        proposals: per record, xyxy boxes in original pixels (LeViLM).
        names: known entity names for the lower-cased target heuristic.
        clusters: per record, coreference clusters (character spans over
            ``"<query>. <knowledge>"``) from any external system (LeViLM); with
            ``use_knowledge=False`` only the spans inside the query are kept.
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        images_dir: str | Path,
        tokenizer: Any,
        *,
        mode: str = "kevili",
        size: int = 640,
        train: bool = False,
        use_knowledge: bool = True,
        max_query_len: int = 40,
        max_knowledge_len: int = 128,
        max_text_len: int = 168,
        proposals: Sequence[Sequence[Sequence[float]]] | None = None,
        convention: str = "center",
        names: Sequence[str] | None = None,
        clusters: Sequence[Sequence[Sequence[Sequence[int]]]] | None = None,
        use_flip: bool = True,
        use_color: bool = True,
    ) -> None:
        if mode not in ("kevili", "levilm"):
            raise ValueError(f"mode must be 'kevili' or 'levilm', got {mode!r}")
        if mode == "levilm" and proposals is None:
            raise ValueError("LeViLM needs proposals (one list of xyxy boxes per record)")
        if proposals is not None and len(proposals) != len(records):
            raise ValueError(f"{len(proposals)} proposal lists for {len(records)} records")
        if clusters is not None and len(clusters) != len(records):
            raise ValueError(f"{len(clusters)} cluster lists for {len(records)} records")
        self.clusters = clusters
        self.records = list(records)
        self.images_dir = Path(images_dir)
        self.tokenizer = tokenizer
        self.mode = mode
        self.size = size
        self.train = train
        self.use_knowledge = use_knowledge
        self.max_query_len = max_query_len
        self.max_knowledge_len = max_knowledge_len
        self.max_text_len = max_text_len
        self.proposals = proposals
        self.convention = convention
        self.names = names
        self.use_flip = use_flip
        self.use_color = use_color
        self._cache: dict[str, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, name: str) -> Image.Image:
        if name not in self._cache:
            path = self.images_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"image {path} not found")
            with Image.open(path) as im:
                image = im.convert("RGB")
            if len(self._cache) < 4096:
                self._cache[name] = image
            return image
        return self._cache[name]

    def _tokens(self, text: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            text, max_length=length, truncation=True, padding="max_length", return_tensors="pt"
        )
        return enc["input_ids"][0], enc["attention_mask"][0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        image = self._image(str(rec["image_name"]))
        box = release_to_xyxy(rec["bbox"], self.convention)
        knowledge = str(rec["knowledge"]) if self.use_knowledge else ""
        if self.train and self.mode == "kevili":
            # a fresh draw per call: torch's generator is seeded by the trainer (and per DataLoader
            # worker), so augmentations differ between epochs yet repeat with the same seed
            rng = random.Random(int(torch.randint(2**31 - 1, ())))
            sample = train_transform(
                image,
                box,
                str(rec["ref_exp"]),
                knowledge,
                size=self.size,
                rng=rng,
                use_flip=self.use_flip,
                use_color=self.use_color,
            )
        else:
            sample = eval_transform(image, box, str(rec["ref_exp"]), knowledge, size=self.size)
        out: dict[str, Any] = {
            "index": index,
            "pixel_values": sample["pixel_values"],
            "pixel_mask": sample["pixel_mask"],
            "target": sample["target"],
            "scale": sample["letterbox"].scale,
            "pad": torch.tensor(
                [sample["letterbox"].pad_x, sample["letterbox"].pad_y], dtype=torch.float32
            ),
        }
        if self.mode == "kevili":
            out["query_ids"], out["query_mask"] = self._tokens(sample["query"], self.max_query_len)
            out["know_ids"], out["know_mask"] = self._tokens(
                sample["knowledge"], self.max_knowledge_len
            )
            return out
        query, know = sample["query"], sample["knowledge"]
        text = f"{query}. {know}"
        enc = self.tokenizer(
            text,
            max_length=self.max_text_len,
            truncation=True,
            padding="max_length",
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        clusters = None
        if self.clusters is not None:
            limit = len(query) + 2 + len(know)
            clusters = [
                [(int(a), int(b)) for a, b in cluster if b <= limit]
                for cluster in self.clusters[index]
            ]
            clusters = [c for c in clusters if c]
        spans = target_mentions(query, know, clusters=clusters, names=self.names)
        mask = entity_token_mask(enc["offset_mapping"][0].tolist(), spans)
        assert self.proposals is not None
        lb = sample["letterbox"]
        props = torch.tensor(self.proposals[index], dtype=torch.float32) * lb.scale
        props[:, 0::2] += lb.pad_x
        props[:, 1::2] += lb.pad_y
        gt = torch.tensor(box, dtype=torch.float32) * lb.scale
        gt[0::2] += lb.pad_x
        gt[1::2] += lb.pad_y
        out.update(
            text_ids=enc["input_ids"][0],
            text_mask=enc["attention_mask"][0],
            entity_mask=torch.tensor(mask, dtype=torch.bool),
            boxes=props,
            gt_xyxy=gt,
        )
        return out


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of samples (all proposals lists must have equal length)."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = torch.tensor(values)
    return out
