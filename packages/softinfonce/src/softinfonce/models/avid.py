"""AVID-compatible encoders: R(2+1)D video net, Conv2D audio net and projection heads.

Module names follow AVID's checkpoints (``video_model.conv2x.0.spt_conv1`` ...), so loading one is
a plain ``load_state_dict`` after stripping ``module.`` (see :mod:`softinfonce.convert`).
Differences from torchvision's r2plus1d_18: the middle width equals the output width, the
shortcut is a bias-free 1x1x1 conv without BN, BN is applied after the residual sum, and the
global pool is a max pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "R2Plus1DBlock",
    "R2Plus1D",
    "AudioBlock",
    "AudioConv2D",
    "ProjectionHead",
    "AVModel",
    "VIDEO_DEPTHS",
    "AUDIO_DEPTHS",
    "r2plus1d_18_avid",
    "audio_conv2d_10",
    "create_av_model",
]

VIDEO_DEPTHS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
AUDIO_DEPTHS = {10: 4}


class R2Plus1DBlock(nn.Module):
    """(spatial 1x3x3 -> BN -> ReLU -> temporal 3x1x1 -> BN -> ReLU) -> spatial -> BN -> ReLU ->
    temporal, + shortcut, then BN and ReLU. ``x: (B, C_in, T, H, W) -> (B, C_out, T/s, H/s, W/s)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.spt_conv1 = nn.Conv3d(
            in_channels, out_channels, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False
        )
        self.spt_bn1 = nn.BatchNorm3d(out_channels)
        self.tmp_conv1 = nn.Conv3d(
            out_channels, out_channels, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False
        )
        self.tmp_bn1 = nn.BatchNorm3d(out_channels)
        self.spt_conv2 = nn.Conv3d(out_channels, out_channels, (1, 3, 3), 1, (0, 1, 1), bias=False)
        self.spt_bn2 = nn.BatchNorm3d(out_channels)
        self.tmp_conv2 = nn.Conv3d(out_channels, out_channels, (3, 1, 1), 1, (1, 0, 0), bias=False)
        self.out_bn = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.res_conv: nn.Module | None = nn.Conv3d(
                in_channels, out_channels, 1, stride, bias=False
            )
        else:
            self.res_conv = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.spt_bn1(self.spt_conv1(x)))
        out = self.relu(self.tmp_bn1(self.tmp_conv1(out)))
        out = self.relu(self.spt_bn2(self.spt_conv2(out)))
        out = self.tmp_conv2(out)
        shortcut = self.res_conv(x) if self.res_conv is not None else x
        return self.relu(self.out_bn(out + shortcut))


class R2Plus1D(nn.Module):
    """AVID's R(2+1)D video encoder. ``x: (B, 3, T, H, W) -> (B, widths[-1])`` (global max pool)."""

    def __init__(
        self,
        depth: int = 18,
        widths: Sequence[int] = (64, 128, 256, 512),
        in_channels: int = 3,
        layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if layers is None:
            if depth not in VIDEO_DEPTHS:
                raise ValueError(f"depth must be one of {sorted(VIDEO_DEPTHS)}, got {depth}")
            layers = VIDEO_DEPTHS[depth]
        if len(widths) != 4 or len(layers) != 4:
            raise ValueError(f"need 4 widths and 4 stage depths, got {widths} and {layers}")
        stem = widths[0]
        self.conv1 = nn.Sequential(
            nn.Conv3d(in_channels, stem, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
            nn.BatchNorm3d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        channels = stem
        for stage, (width, count) in enumerate(zip(widths, layers)):
            stride = 1 if stage == 0 else 2
            blocks = [
                R2Plus1DBlock(channels if i == 0 else width, width, stride if i == 0 else 1)
                for i in range(count)
            ]
            setattr(self, f"conv{stage + 2}x", nn.Sequential(*blocks))
            channels = width
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.num_features = channels
        self.feature_info = [
            {"num_chs": w, "reduction": 4 * 2**i, "module": f"conv{i + 2}x"}
            for i, w in enumerate(widths)
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled ``(B, C, T', H', W')``."""
        if x.ndim != 5:
            raise ValueError(f"video must be (B, C, T, H, W), got shape {tuple(x.shape)}")
        x = self.conv1(x)
        for name in ("conv2x", "conv3x", "conv4x", "conv5x"):
            x = getattr(self, name)(x)
        return x

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of conv2x..conv5x."""
        x = self.conv1(x)
        outs = []
        for name in ("conv2x", "conv3x", "conv4x", "conv5x"):
            x = getattr(self, name)(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x)).flatten(1)


class AudioBlock(nn.Module):
    """Plain (non-residual) conv3x3-BN-ReLU-conv3x3-BN-ReLU; the stride is in the first conv."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class AudioConv2D(nn.Module):
    """AVID's Conv2D-10 audio encoder. ``x: (B, 1, time, freq) -> (B, widths[-1])``."""

    def __init__(
        self,
        depth: int = 10,
        widths: Sequence[int] = (64, 128, 256, 512),
        in_channels: int = 1,
        strides: Sequence[int] = (2, 2, 2, 1),
    ) -> None:
        super().__init__()
        if depth not in AUDIO_DEPTHS:
            raise ValueError(f"depth must be one of {sorted(AUDIO_DEPTHS)}, got {depth}")
        if len(widths) != 4 or len(strides) != 4:
            raise ValueError(f"need 4 widths and 4 strides, got {widths} and {strides}")
        stem = widths[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, stem, 7, 2, 3, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        channels = stem
        for i, (width, stride) in enumerate(zip(widths, strides)):
            setattr(self, f"block{i + 1}", AudioBlock(channels, width, stride))
            channels = width
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.num_features = channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled ``(B, C, time', freq')``."""
        if x.ndim != 4:
            raise ValueError(f"audio must be (B, 1, time, freq), got shape {tuple(x.shape)}")
        x = self.conv1(x)
        for i in range(1, 5):
            x = getattr(self, f"block{i}")(x)
        return x

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of block1..block4 (AVID's conv2x..conv5x)."""
        x = self.conv1(x)
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"block{i}")(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x)).flatten(1)


class ProjectionHead(nn.Module):
    """Linear-ReLU-Linear-ReLU-Linear (bias, no BN, no normalisation). ``(B, in) -> (B, dims[-1])``.

    ``use_output_bn=True`` (not AVID's; off by default) centres the output with a parameter-free
    BatchNorm, which lets tiny from-scratch models leave the collapsed start where every
    embedding points the same way.
    """

    def __init__(
        self,
        in_features: int = 512,
        dims: Sequence[int] = (512, 512, 128),
        use_output_bn: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_features
        for i, dim in enumerate(dims):
            layers.append(nn.Linear(previous, dim))
            if i < len(dims) - 1:
                layers.append(nn.ReLU(inplace=True))
            previous = dim
        self.projection = nn.Sequential(*layers)
        self.output_bn = nn.BatchNorm1d(previous, affine=False) if use_output_bn else None
        self.out_features = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection(x)
        return self.output_bn(x) if self.output_bn is not None else x


class AVModel(nn.Module):
    """Both encoders and both heads. ``forward(video, audio) -> (z_video, z_audio)`` (unnormalised).

    The encoders are AVID's :class:`R2Plus1D` and :class:`AudioConv2D` by default; any module
    mapping a batch to ``(B, C)`` features fits (the tiny MLPs, the torchvision nets)."""

    def __init__(
        self,
        video_model: nn.Module,
        audio_model: nn.Module,
        video_proj: ProjectionHead,
        audio_proj: ProjectionHead,
    ) -> None:
        super().__init__()
        self.video_model = video_model
        self.audio_model = audio_model
        self.video_proj = video_proj
        self.audio_proj = audio_proj

    def encode_video(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B,3,T,H,W) -> (backbone feature (B, C), embedding (B, D))``."""
        feature = self.video_model(video)
        return feature, self.video_proj(feature)

    def encode_audio(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B,1,time,freq) -> (backbone feature (B, C), embedding (B, D))``."""
        feature = self.audio_model(audio)
        return feature, self.audio_proj(feature)

    def forward(
        self, video: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_video(video)[1], self.encode_audio(audio)[1]


def r2plus1d_18_avid(**overrides: object) -> R2Plus1D:
    """AVID's R(2+1)D-18 (15,379,136 parameters)."""
    args: dict[str, object] = {"depth": 18, "widths": (64, 128, 256, 512)}
    args.update(overrides)
    return R2Plus1D(**args)  # type: ignore[arg-type]


def audio_conv2d_10(**overrides: object) -> AudioConv2D:
    """AVID's Conv2D-10 audio net (4,725,696 parameters)."""
    args: dict[str, object] = {"depth": 10, "widths": (64, 128, 256, 512)}
    args.update(overrides)
    return AudioConv2D(**args)  # type: ignore[arg-type]


def create_av_model(
    video_depth: int = 18,
    video_widths: Sequence[int] = (64, 128, 256, 512),
    audio_widths: Sequence[int] = (64, 128, 256, 512),
    head_dims: Sequence[int] = (512, 512, 128),
    use_output_bn: bool = False,
) -> AVModel:
    """The AV model; defaults are AVID's (21,286,784 parameters)."""
    video = R2Plus1D(depth=video_depth, widths=video_widths)
    audio = AudioConv2D(depth=10, widths=audio_widths)
    return AVModel(
        video,
        audio,
        ProjectionHead(video.num_features, head_dims, use_output_bn),
        ProjectionHead(audio.num_features, head_dims, use_output_bn),
    )
