"""ETRIS model parts: open_clip towers, Bridger, neck / decoder / projector, the full model."""

from etris.models.bridger import Bridger, FullInteractor, GatedInteractor
from etris.models.etris import (
    ETRIS,
    ETRIS_VARIANTS,
    ETRISFeatures,
    create_etris,
    list_etris,
    register_etris,
)
from etris.models.heads import GADecoder, GADecoderLayer, HANeck, Projector, pos1d, pos2d
from etris.models.towers import (
    CLIP_MEAN,
    CLIP_STD,
    create_clip,
    dense_attention_pool,
    load_clip_weights,
    resize_vit_pos_embed,
)

__all__ = [
    "Bridger",
    "FullInteractor",
    "GatedInteractor",
    "ETRIS",
    "ETRIS_VARIANTS",
    "ETRISFeatures",
    "create_etris",
    "list_etris",
    "register_etris",
    "GADecoder",
    "GADecoderLayer",
    "HANeck",
    "Projector",
    "pos1d",
    "pos2d",
    "CLIP_MEAN",
    "CLIP_STD",
    "create_clip",
    "dense_attention_pool",
    "load_clip_weights",
    "resize_vit_pos_embed",
]
