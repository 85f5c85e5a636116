"""Encoders: AVID-compatible R(2+1)D, Conv2D audio net and projection heads."""

from softinfonce.models.avid import (
    AUDIO_DEPTHS,
    VIDEO_DEPTHS,
    AudioConv2D,
    AVModel,
    ProjectionHead,
    R2Plus1D,
    audio_conv2d_10,
    create_av_model,
    r2plus1d_18_avid,
)

__all__ = [
    "AUDIO_DEPTHS",
    "VIDEO_DEPTHS",
    "AudioConv2D",
    "AVModel",
    "ProjectionHead",
    "R2Plus1D",
    "audio_conv2d_10",
    "create_av_model",
    "r2plus1d_18_avid",
]
