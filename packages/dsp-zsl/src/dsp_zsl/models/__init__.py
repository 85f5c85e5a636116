"""Base generators (registry), DSP modules and the model containers."""

from dsp_zsl.models.bases import (
    BASE_REGISTRY,
    AttDec,
    BaseModels,
    ClswganGenerator,
    Critic,
    Encoder,
    FeatureRefinement,
    Feedback,
    Generator,
    LinearLogSoftmax,
    create_base,
    list_bases,
    register_base,
)
from dsp_zsl.models.dsp import V2SM, V2SMMLP, VOPE, PrototypeBank, create_v2sm

__all__ = [
    "BASE_REGISTRY",
    "AttDec",
    "BaseModels",
    "ClswganGenerator",
    "Critic",
    "Encoder",
    "Feedback",
    "FeatureRefinement",
    "Generator",
    "LinearLogSoftmax",
    "PrototypeBank",
    "V2SM",
    "V2SMMLP",
    "VOPE",
    "create_base",
    "create_v2sm",
    "list_bases",
    "register_base",
]
