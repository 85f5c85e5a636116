"""Data: clip lists, the co-augmented dataset and the embedded synthetic clip generator."""

from softinfonce.data.datasets import (
    ClipRecord,
    SpeedBatchSampler,
    SpeedCoAugDataset,
    collate_views,
    hmdb51_split,
    kinetics_folder,
    kinetics_sounds,
    read_clip_csv,
    ucf101_split,
)
from softinfonce.data.synthetic import SyntheticSpec, generate_split

__all__ = [
    "ClipRecord",
    "SpeedBatchSampler",
    "SpeedCoAugDataset",
    "SyntheticSpec",
    "collate_views",
    "generate_split",
    "hmdb51_split",
    "kinetics_folder",
    "kinetics_sounds",
    "read_clip_csv",
    "ucf101_split",
]
