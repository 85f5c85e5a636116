"""Speed co-augmentation + SoftInfoNCE for unsupervised audio-visual pre-training (arXiv:2309.13942)."""

from softinfonce._version import __version__
from softinfonce.audio import LogMelSpectrogram, LogSpectrogram
from softinfonce.augment import (
    CoAugConfig,
    cut_audio,
    plan_views,
    sample_speed,
    speed_audio,
    video_indices,
)
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
from softinfonce.decode import DecodeError, MissingAudioError, probe_video, read_audio, read_frames
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
    ModelConfig,
    PretrainConfig,
    build_model,
    forward_backward,
    pretrain,
    train_step,
)

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
    "forward_backward",
    "train_step",
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
