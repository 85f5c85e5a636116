"""Readers of the xlsa17 benchmarks and the generated benchmark behind ``dsp-zsl demo``."""

from dsp_zsl.data.synthetic import SyntheticZSLConfig, write_synthetic_xlsa17
from dsp_zsl.data.xlsa17 import SPLIT_STATS, ZSLData, load_xlsa17, read_mat

__all__ = [
    "SPLIT_STATS",
    "SyntheticZSLConfig",
    "ZSLData",
    "load_xlsa17",
    "read_mat",
    "write_synthetic_xlsa17",
]
