"""RefCOCO / RefCOCO+ / G-Ref readers: the JSON + mask-PNG layout and the official LMDB layout.

JSON layout (the official preparation scripts' output)::

    <root>/anns/<dataset>/<split>.json    list of refs {bbox, cat, segment_id, img_name,
                                          sentences: [{idx, sent_id, sent}], sentences_num}
    <root>/masks/<dataset>/<segment_id>.png  0/255 mask at full image size
    <root>/images/<img_name>             COCO train2014 images

LMDB layout: ``<root>/lmdb/<dataset>/<split>.lmdb`` with keys ``b"0"``..``b"N-1"``, ``b"__keys__"``
and ``b"__len__"``; values are dicts {img: JPEG bytes, mask: PNG bytes, cat, seg_id, img_name,
num_sents, sents}. Values written by pickle are read with a restricted unpickler (plain data only);
values written by the long-removed ``pyarrow.serialize`` need an old pyarrow once, through
:func:`convert_lmdb` (needs the ``lmdb`` extra).
"""

from __future__ import annotations

import io
import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from etris.data.transforms import (
    image_to_tensor,
    letterbox_params,
    normalize_image,
    tokenize,
    warp_letterbox,
)
from etris.models.towers import CLIP_MEAN

__all__ = [
    "DATASETS",
    "load_refs",
    "decode_lmdb_value",
    "convert_lmdb",
    "RefJsonDataset",
    "RefLmdbDataset",
    "prepare_sample",
    "collate_eval",
]

DATASETS = ("refcoco", "refcoco+", "refcocog_u", "refcocog_g")
_FILL = tuple(c * 255 for c in CLIP_MEAN)
_SAFE_BUILTINS = {"dict", "list", "tuple", "str", "bytes", "int", "float", "bool", "set"}


def load_refs(path: str | Path) -> list[dict[str, Any]]:
    """Read one ``anns/<dataset>/<split>.json`` file and check its fields."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"annotation file not found: {path} (produce it with the official data preparation "
            "from refer's refs(unc).p / instances.json)"
        )
    refs = json.loads(path.read_text())
    if not isinstance(refs, list):
        raise ValueError(f"{path} must hold a list of refs, got {type(refs).__name__}")
    for ref in refs[:1]:
        missing = {"segment_id", "img_name", "sentences"} - set(ref)
        if missing:
            raise ValueError(f"{path}: refs lack field(s) {sorted(missing)}")
    return refs


class _DataUnpickler(pickle.Unpickler):
    """Unpickles plain containers, strings, bytes and numbers only."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an LMDB value")


def decode_lmdb_value(raw: bytes) -> Any:
    """Decode one LMDB value: pickle (plain data only), else the legacy ``pyarrow.serialize``."""
    try:
        return _DataUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError) as pickle_err:
        try:
            import importlib

            pyarrow: Any = importlib.import_module("pyarrow")  # optional, only for legacy files
        except ImportError:
            pyarrow = None
        deserialize = getattr(pyarrow, "deserialize", None) if pyarrow is not None else None
        if deserialize is None:
            raise ValueError(
                "this LMDB value is neither plain pickle nor readable here; values written by "
                "pyarrow.serialize need pyarrow<12 once: run `etris convert-lmdb SRC DST` in an "
                f"environment with it (pickle error: {pickle_err})"
            ) from pickle_err
        return deserialize(raw)


def _open_lmdb(path: str | Path, write: bool = False, map_size: int = 1 << 36) -> Any:
    try:
        import lmdb
    except ImportError as err:
        raise ImportError(
            "reading LMDB files needs the lmdb extra: pip install 'etris[lmdb]'"
        ) from err
    path = Path(path)
    if not write and not path.exists():
        raise FileNotFoundError(f"LMDB not found: {path} (lmdb/<dataset>/<split>.lmdb)")
    if write:
        return lmdb.open(str(path), subdir=path.is_dir(), map_size=map_size)
    return lmdb.open(
        str(path), subdir=path.is_dir(), readonly=True, lock=False, readahead=False, meminit=False
    )


def convert_lmdb(src: str | Path, dst: str | Path) -> int:
    """Rewrite an LMDB with every value re-serialised by pickle; returns the number of entries."""
    env_in = _open_lmdb(src)
    dst = Path(dst)
    env_out = _open_lmdb(dst, write=True)
    count = 0
    with env_in.begin() as txn_in, env_out.begin(write=True) as txn_out:
        for key, raw in txn_in.cursor():
            txn_out.put(key, pickle.dumps(decode_lmdb_value(raw), protocol=4))
            count += 1
    env_in.close()
    env_out.close()
    return count


def _decode_image(data: bytes) -> torch.Tensor:
    from PIL import Image

    return image_to_tensor(Image.open(io.BytesIO(data)))


def _decode_mask(data: bytes | Path) -> torch.Tensor:
    from PIL import Image

    image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data).convert("L")
    return torch.from_numpy(np.asarray(image).copy()).float()[None]


def prepare_sample(
    image: torch.Tensor, mask: torch.Tensor | None, sentence: str, size: int, word_len: int
) -> dict[str, Any]:
    """The paper's transform: letterbox (image bicubic, pad = CLIP mean; mask bilinear / 255, soft),
    CLIP normalisation, tokens. image: (3, H, W) in [0, 255]; mask: (1, H, W) 0/255."""
    box = letterbox_params(image.shape[1], image.shape[2], size)
    out: dict[str, Any] = {
        "image": normalize_image(warp_letterbox(image, box, "bicubic", _FILL)),
        "ids": tokenize(sentence, word_len)[0],
        "box": box,
    }
    if mask is not None:
        out["mask"] = warp_letterbox(mask, box, "bilinear").clamp(0, 255) / 255.0
    return out


class _RefBase(Dataset):
    """Train mode: one sample per ref with a random sentence; eval mode: one per sentence."""

    def __init__(self, size: int, word_len: int, mode: str) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.size, self.word_len, self.mode = size, word_len, mode
        self.index: list[tuple[int, int]] = []

    def _build_index(self, sentence_counts: list[int]) -> None:
        if self.mode == "train":
            self.index = [(i, -1) for i in range(len(sentence_counts))]
        else:
            self.index = [(i, j) for i, n in enumerate(sentence_counts) for j in range(n)]

    def __len__(self) -> int:
        return len(self.index)

    def _pick(self, sents: list[str], j: int) -> str:
        if not sents:
            raise ValueError("a ref without sentences")
        return random.choice(sents) if j < 0 else sents[j]

    def _finish(self, image: torch.Tensor, mask: torch.Tensor, sentence: str, ref: int) -> dict:
        sample = prepare_sample(image, mask, sentence, self.size, self.word_len)
        if self.mode == "eval":
            sample["orig_mask"] = mask[0] > 127
            sample["sentence"] = sentence
            sample["ref_index"] = ref
        else:
            del sample["box"]
        return sample


class RefJsonDataset(_RefBase):
    """The JSON + mask-PNG + image-folder layout (see the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        dataset: str,
        split: str,
        size: int = 416,
        word_len: int = 17,
        mode: str = "train",
        image_dir: str = "images",
    ) -> None:
        super().__init__(size, word_len, mode)
        self.root = Path(root)
        self.dataset = dataset
        self.refs = load_refs(self.root / "anns" / dataset / f"{split}.json")
        self.image_dir = self.root / image_dir
        self._build_index([len(r["sentences"]) for r in self.refs])

    def __getitem__(self, item: int) -> dict[str, Any]:
        from PIL import Image

        i, j = self.index[item]
        ref = self.refs[i]
        image_path = self.image_dir / ref["img_name"]
        if not image_path.exists():
            raise FileNotFoundError(f"image not found: {image_path} (COCO train2014)")
        image = image_to_tensor(Image.open(image_path))
        mask = _decode_mask(self.root / "masks" / self.dataset / f"{ref['segment_id']}.png")
        sentence = self._pick([s["sent"] for s in ref["sentences"]], j)
        return self._finish(image, mask, sentence, i)


class RefLmdbDataset(_RefBase):
    """The official LMDB layout (needs the ``lmdb`` extra); pickle values, or pyarrow if present."""

    def __init__(
        self, path: str | Path, size: int = 416, word_len: int = 17, mode: str = "train"
    ) -> None:
        super().__init__(size, word_len, mode)
        self.path = Path(path)
        env = _open_lmdb(self.path)
        with env.begin() as txn:
            raw_len = txn.get(b"__len__")
            raw_keys = txn.get(b"__keys__")
            if raw_len is None or raw_keys is None:
                raise ValueError(f"{self.path} lacks the __len__ / __keys__ entries of the layout")
            self.keys: list[bytes] = [
                k if isinstance(k, bytes) else str(k).encode() for k in decode_lmdb_value(raw_keys)
            ]
            counts = []
            for key in self.keys:
                value = decode_lmdb_value(txn.get(key))
                counts.append(int(value.get("num_sents", len(value["sents"]))))
        env.close()
        self._env: Any = None
        self._build_index(counts)

    def __getitem__(self, item: int) -> dict[str, Any]:
        if self._env is None:  # opened lazily so that worker processes each get their own
            self._env = _open_lmdb(self.path)
        i, j = self.index[item]
        with self._env.begin() as txn:
            value = decode_lmdb_value(txn.get(self.keys[i]))
        image = _decode_image(value["img"])
        mask = _decode_mask(value["mask"])
        return self._finish(image, mask, self._pick(list(value["sents"]), j), i)

    def close(self) -> None:
        """Close the LMDB environment (reopened on the next item)."""
        if self._env is not None:
            self._env.close()
            self._env = None


def collate_eval(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and ids; keep original-size masks, letterbox boxes and sentences as lists."""
    out: dict[str, Any] = {
        "image": torch.stack([s["image"] for s in samples]),
        "ids": torch.stack([s["ids"] for s in samples]),
    }
    for key in ("orig_mask", "box", "sentence", "ref_index"):
        if key in samples[0]:
            out[key] = [s[key] for s in samples]
    if "mask" in samples[0]:
        out["mask"] = torch.stack([s["mask"] for s in samples])
    return out
