"""Audio front-ends built on torchaudio transforms.

``LogSpectrogram`` is AVID's: power STFT (FFT 1024, Hann, centred, hop sr/100), bin 0 kept and the
other 512 bins averaged in adjacent pairs (257 bins), dB (ref 1, amin 1e-10, top_db 100), laid out
**time first**: ``(1, time, freq)`` = 200 x 257 for 2 s at 24 kHz.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchaudio
from torch import nn

__all__ = ["LogSpectrogram", "LogMelSpectrogram", "pair_average_bins"]


def pair_average_bins(power: torch.Tensor) -> torch.Tensor:
    """Keep bin 0 and average bins (1,2), (3,4), ...: ``(..., 1 + 2K, time) -> (..., 1 + K, time)``."""
    if power.shape[-2] % 2 != 1:
        raise ValueError(
            f"expected an odd number of frequency bins (n_fft/2 + 1), got {power.shape[-2]}"
        )
    rest = power[..., 1:, :]
    paired = rest.reshape(*rest.shape[:-2], rest.shape[-2] // 2, 2, rest.shape[-1]).mean(dim=-2)
    return torch.cat([power[..., :1, :], paired], dim=-2)


class LogSpectrogram(nn.Module):
    """Waveform ``(..., 1, S)`` -> log power spectrogram ``(..., 1, time, freq)``.

    ``time = S // hop`` (the centred STFT's extra last frame is dropped, so 2 s -> 200 frames).
    ``normalize`` applies a per-bin mean/std given as ``stats=(mean, std)`` of shape ``(freq,)``.
    """

    def __init__(
        self,
        sample_rate: int = 24_000,
        n_fft: int = 1024,
        hop_length: int | None = None,
        top_db: float | None = 100.0,
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.hop_length = hop_length or sample_rate // 100
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=n_fft,
            hop_length=self.hop_length,
            window_fn=torch.hann_window,
            center=True,
            power=2.0,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=top_db)
        self.num_bins = n_fft // 4 + 1
        if stats is not None:
            mean, std = (torch.as_tensor(s, dtype=torch.float32) for s in stats)
            if mean.shape != (self.num_bins,) or std.shape != (self.num_bins,):
                raise ValueError(
                    f"stats must be two ({self.num_bins},) tensors, got {mean.shape}, {std.shape}"
                )
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
        else:
            self.mean = self.std = None

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        num_frames = waveform.shape[-1] // self.hop_length
        power = pair_average_bins(self.spectrogram(waveform))[..., :num_frames]
        out = self.to_db(power).transpose(-1, -2)
        if self.mean is not None:
            out = (out - self.mean) / self.std
        return out


class LogMelSpectrogram(nn.Module):
    """Waveform ``(..., 1, S)`` -> log-mel ``(..., 1, time, n_mels)`` (HTK mel, no mel norm)."""

    def __init__(
        self,
        sample_rate: int = 24_000,
        n_fft: int = 1024,
        hop_length: int | None = None,
        n_mels: int = 80,
        log: Literal["log", "db"] = "log",
    ) -> None:
        super().__init__()
        if log not in ("log", "db"):
            raise ValueError(f"log must be 'log' or 'db', got {log!r}")
        self.hop_length = hop_length or sample_rate // 100
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=self.hop_length,
            n_mels=n_mels,
            mel_scale="htk",
            norm=None,
            power=2.0,
        )
        self.log = log
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=100.0)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        num_frames = waveform.shape[-1] // self.hop_length
        mel = self.mel(waveform)[..., :num_frames]
        out = torch.log(mel + 1e-6) if self.log == "log" else self.to_db(mel)
        return out.transpose(-1, -2)
