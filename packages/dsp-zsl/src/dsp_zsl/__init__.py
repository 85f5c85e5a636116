"""DSP: dynamic semantic prototypes evolving around generative zero-shot learning models.

Chen et al., "Evolving Semantic Prototype Improves Generative Zero-Shot Learning", ICML 2023.
Names load on first use, so ``import dsp_zsl`` (and ``dsp-zsl --help``) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dsp_zsl._version import __version__
from papers_shared.lazy import lazy_exports

if TYPE_CHECKING:
    from dsp_zsl.config import DSPConfig, get_preset
    from dsp_zsl.data import SyntheticZSLConfig, ZSLData, load_xlsa17, write_synthetic_xlsa17
    from dsp_zsl.evaluate import gzsl_metrics, harmonic_mean, per_class_accuracy
    from dsp_zsl.models import V2SM, VOPE, PrototypeBank, create_base, list_bases, register_base
    from dsp_zsl.train import (
        DSPModel,
        DSPTask,
        build_dsp_model,
        evaluate_model,
        fit_dsp,
        load_dsp_checkpoint,
        save_dsp_checkpoint,
    )

_WHERE = {
    "DSPConfig": "config",
    "get_preset": "config",
    "SyntheticZSLConfig": "data",
    "ZSLData": "data",
    "load_xlsa17": "data",
    "write_synthetic_xlsa17": "data",
    "gzsl_metrics": "evaluate",
    "harmonic_mean": "evaluate",
    "per_class_accuracy": "evaluate",
    "V2SM": "models",
    "VOPE": "models",
    "PrototypeBank": "models",
    "create_base": "models",
    "list_bases": "models",
    "register_base": "models",
    "DSPModel": "train",
    "DSPTask": "train",
    "build_dsp_model": "train",
    "evaluate_model": "train",
    "fit_dsp": "train",
    "load_dsp_checkpoint": "train",
    "save_dsp_checkpoint": "train",
}

__all__ = [
    "__version__",
    "DSPConfig",
    "DSPModel",
    "DSPTask",
    "PrototypeBank",
    "SyntheticZSLConfig",
    "V2SM",
    "VOPE",
    "ZSLData",
    "build_dsp_model",
    "create_base",
    "evaluate_model",
    "fit_dsp",
    "get_preset",
    "gzsl_metrics",
    "harmonic_mean",
    "list_bases",
    "load_dsp_checkpoint",
    "load_xlsa17",
    "per_class_accuracy",
    "register_base",
    "save_dsp_checkpoint",
    "write_synthetic_xlsa17",
]


__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"dsp_zsl.{module}" for name, module in _WHERE.items()}
)
