"""Data: RefCOCO-family readers (JSON + masks, LMDB), transforms, and the shapes generator."""

from etris.data.refer import (
    DATASETS,
    RefJsonDataset,
    RefLmdbDataset,
    collate_eval,
    convert_lmdb,
    decode_lmdb_value,
    load_refs,
    prepare_sample,
)
from etris.data.shapes import ShapesDataset, ShapesSample, make_shapes_sample
from etris.data.transforms import (
    Letterbox,
    letterbox_params,
    normalize_image,
    tokenize,
    unwarp_letterbox,
    warp_letterbox,
)

__all__ = [
    "DATASETS",
    "RefJsonDataset",
    "RefLmdbDataset",
    "collate_eval",
    "convert_lmdb",
    "decode_lmdb_value",
    "load_refs",
    "prepare_sample",
    "ShapesDataset",
    "ShapesSample",
    "make_shapes_sample",
    "Letterbox",
    "letterbox_params",
    "normalize_image",
    "tokenize",
    "unwarp_letterbox",
    "warp_letterbox",
]
