"""ETRIS: Bridger adapters between frozen open_clip towers for referring image segmentation."""

from etris._version import __version__
from etris.config import ETRISConfig, TrainConfig
from etris.convert import convert_official_state_dict, load_etris_weights, load_official_checkpoint
from etris.evaluate import RISMetrics, evaluate_model, predict_probs
from etris.losses import etris_loss
from etris.models import (
    ETRIS,
    Bridger,
    GADecoder,
    HANeck,
    Projector,
    create_clip,
    create_etris,
    list_etris,
    register_etris,
    resize_vit_pos_embed,
)

__all__ = [
    "__version__",
    "ETRISConfig",
    "TrainConfig",
    "ETRIS",
    "Bridger",
    "HANeck",
    "GADecoder",
    "Projector",
    "create_etris",
    "list_etris",
    "register_etris",
    "create_clip",
    "resize_vit_pos_embed",
    "etris_loss",
    "RISMetrics",
    "evaluate_model",
    "predict_probs",
    "convert_official_state_dict",
    "load_official_checkpoint",
    "load_etris_weights",
]
