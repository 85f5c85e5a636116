"""Speed co-augmentation + SoftInfoNCE for unsupervised audio-visual pre-training (arXiv:2309.13942).

The public names below load their module on first use, so ``import softinfonce`` (and the
command's ``--help``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from papers_shared.lazy import lazy_exports
from softinfonce._version import __version__

if TYPE_CHECKING:
    from softinfonce.augment import (
        CoAugConfig,
        cut_audio,
        plan_views,
        sample_speed,
        speed_audio,
        video_indices,
    )
    from softinfonce.config import ModelConfig, PretrainConfig
    from softinfonce.convert import load_avid_checkpoint, to_avid_checkpoint
    from softinfonce.data import (
        ClipRecord,
        SpeedCoAugDataset,
        collate_views,
        generate_split,
        hmdb51_split,
        kinetics_folder,
        kinetics_sounds,
        read_clip_csv,
        ucf101_split,
    )
    from softinfonce.data.audio import LogMelSpectrogram, LogSpectrogram
    from softinfonce.data.decode import (
        DecodeError,
        MissingAudioError,
        probe_video,
        read_audio,
        read_frames,
    )
    from softinfonce.evaluate import (
        cross_modal_recall,
        extract_embeddings,
        linear_probe,
        retrieval_topk,
    )
    from softinfonce.losses import SoftInfoNCELoss, soft_info_nce, soft_target_cross_entropy
    from softinfonce.models import (
        AudioConv2D,
        AVModel,
        ProjectionHead,
        R2Plus1D,
        audio_conv2d_10,
        create_av_model,
        r2plus1d_18_avid,
    )
    from softinfonce.train import (
        SoftInfoNCETask,
        batch_loss,
        build_model,
        encode_views,
        pretrain,
    )

_LAZY: dict[str, str] = {
    "AVModel": "softinfonce.models",
    "AudioConv2D": "softinfonce.models",
    "ClipRecord": "softinfonce.data",
    "CoAugConfig": "softinfonce.augment",
    "DecodeError": "softinfonce.data.decode",
    "LogMelSpectrogram": "softinfonce.data.audio",
    "LogSpectrogram": "softinfonce.data.audio",
    "MissingAudioError": "softinfonce.data.decode",
    "ModelConfig": "softinfonce.config",
    "PretrainConfig": "softinfonce.config",
    "ProjectionHead": "softinfonce.models",
    "R2Plus1D": "softinfonce.models",
    "SoftInfoNCELoss": "softinfonce.losses",
    "SoftInfoNCETask": "softinfonce.train",
    "SpeedCoAugDataset": "softinfonce.data",
    "audio_conv2d_10": "softinfonce.models",
    "batch_loss": "softinfonce.train",
    "build_model": "softinfonce.train",
    "collate_views": "softinfonce.data",
    "create_av_model": "softinfonce.models",
    "cross_modal_recall": "softinfonce.evaluate",
    "cut_audio": "softinfonce.augment",
    "encode_views": "softinfonce.train",
    "extract_embeddings": "softinfonce.evaluate",
    "generate_split": "softinfonce.data",
    "hmdb51_split": "softinfonce.data",
    "kinetics_folder": "softinfonce.data",
    "kinetics_sounds": "softinfonce.data",
    "linear_probe": "softinfonce.evaluate",
    "load_avid_checkpoint": "softinfonce.convert",
    "plan_views": "softinfonce.augment",
    "pretrain": "softinfonce.train",
    "probe_video": "softinfonce.data.decode",
    "r2plus1d_18_avid": "softinfonce.models",
    "read_audio": "softinfonce.data.decode",
    "read_clip_csv": "softinfonce.data",
    "read_frames": "softinfonce.data.decode",
    "retrieval_topk": "softinfonce.evaluate",
    "sample_speed": "softinfonce.augment",
    "soft_info_nce": "softinfonce.losses",
    "soft_target_cross_entropy": "softinfonce.losses",
    "speed_audio": "softinfonce.augment",
    "to_avid_checkpoint": "softinfonce.convert",
    "ucf101_split": "softinfonce.data",
    "video_indices": "softinfonce.augment",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "__version__",
    "AVModel",
    "AudioConv2D",
    "ClipRecord",
    "CoAugConfig",
    "DecodeError",
    "LogMelSpectrogram",
    "LogSpectrogram",
    "MissingAudioError",
    "ModelConfig",
    "PretrainConfig",
    "SoftInfoNCETask",
    "batch_loss",
    "encode_views",
    "ProjectionHead",
    "R2Plus1D",
    "SoftInfoNCELoss",
    "SpeedCoAugDataset",
    "audio_conv2d_10",
    "build_model",
    "collate_views",
    "create_av_model",
    "cross_modal_recall",
    "cut_audio",
    "extract_embeddings",
    "generate_split",
    "hmdb51_split",
    "kinetics_folder",
    "kinetics_sounds",
    "linear_probe",
    "load_avid_checkpoint",
    "plan_views",
    "pretrain",
    "probe_video",
    "r2plus1d_18_avid",
    "read_audio",
    "read_clip_csv",
    "read_frames",
    "retrieval_topk",
    "sample_speed",
    "soft_info_nce",
    "soft_target_cross_entropy",
    "speed_audio",
    "to_avid_checkpoint",
    "ucf101_split",
    "video_indices",
]
