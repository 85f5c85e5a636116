"""The optional torchvision encoders: parameter counts, shapes, lazy import, use in build_model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from softinfonce.train import ModelConfig, build_model

from papers_shared.counting import count_parameters

# torchvision's resnet18 has 11,689,512 parameters; minus the 1000-way fc (512*1000 + 1000) and
# minus the two input channels the spectrogram does not have (64 * 2 * 7 * 7).
RESNET18_AUDIO_PARAMS = 11_689_512 - 513_000 - 6_272
# torchvision's r2plus1d_18: 31,505,325 parameters; minus its 400-way fc (512*400 + 400).
R2PLUS1D_TV_PARAMS = 31_505_325 - 205_200


def test_parameter_counts() -> None:
    from softinfonce.models.torchvision_nets import AudioResNet18, TorchvisionR2Plus1D18

    with torch.device("meta"):
        assert count_parameters(AudioResNet18()).total == RESNET18_AUDIO_PARAMS == 11_170_240
        assert count_parameters(TorchvisionR2Plus1D18()).total == R2PLUS1D_TV_PARAMS


def test_audio_resnet18_shapes_pool_and_errors() -> None:
    from softinfonce.models.torchvision_nets import AudioResNet18

    net = AudioResNet18().eval()
    assert isinstance(net.net.avgpool, torch.nn.AdaptiveMaxPool2d)
    assert net(torch.randn(2, 1, 100, 129)).shape == (2, 512)
    assert isinstance(AudioResNet18(pool="avg").net.avgpool, torch.nn.AdaptiveAvgPool2d)
    with pytest.raises(ValueError, match="time, freq"):
        net(torch.randn(2, 3, 100, 129))
    with pytest.raises(ValueError, match="pool"):
        AudioResNet18(pool="sum")  # type: ignore[arg-type]


def test_build_model_swaps_in_the_optional_nets() -> None:
    model = build_model(ModelConfig(audio_arch="resnet18", head_dims=(32, 16)))
    assert type(model.audio_model).__name__ == "AudioResNet18"
    assert type(model.video_model).__name__ == "R2Plus1D"  # the AVID video net stays
    z_video, z_audio = model.eval()(torch.randn(2, 3, 4, 32, 32), torch.randn(2, 1, 64, 65))
    assert z_video.shape == z_audio.shape == (2, 16)
    with pytest.raises(ValueError, match="audio_arch"):
        build_model(ModelConfig(audio_arch="vggish"))  # type: ignore[arg-type]


def test_not_imported_by_default() -> None:
    code = (
        "import sys, softinfonce, softinfonce.models, softinfonce.train; "
        "print('softinfonce.models.torchvision_nets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
