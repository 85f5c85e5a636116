from __future__ import annotations

import math
import random

import pytest
import torch
from softinfonce.augment import (
    CoAugConfig,
    SpatialAugment,
    cut_audio,
    fit_length,
    plan_views,
    sample_speed,
    speed_audio,
    video_indices,
)
from softinfonce.data.audio import LogMelSpectrogram, LogSpectrogram, pair_average_bins


def sine(freq: float, seconds: float, sample_rate: int) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    return torch.sin(2 * math.pi * freq * t).float().unsqueeze(0)


def _peak_hz(wave: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(
        wave[0].double() * torch.hann_window(wave.shape[-1], dtype=torch.float64)
    ).abs()
    return float(spectrum.argmax()) * sample_rate / wave.shape[-1]


def test_speed_one_indices_follow_the_base_rate() -> None:
    got = video_indices(0.5, 1.0, 30.0, 1000, num_frames=8, frame_rate=16.0)
    assert got == [round(0.5 * 30 + k * 30 / 16) for k in range(8)]


def test_speed_two_doubles_the_stride() -> None:
    got = video_indices(0.0, 2.0, 32.0, 1000, num_frames=8, frame_rate=16.0)
    assert got == [4 * k for k in range(8)]


@pytest.mark.parametrize("speed", [0.5, 1.0, 2.0, 3.0, 4.0])
@pytest.mark.parametrize("overflow", ["clamp", "loop"])
def test_indices_never_pass_the_decodable_end(speed: float, overflow: str) -> None:
    for start in (0.0, 1.0, 2.9, 5.0):
        got = video_indices(start, speed, 25.0, 40, num_frames=8, frame_rate=8.0, overflow=overflow)
        assert min(got) >= 0 and max(got) <= 39


def test_clamp_moves_the_window_back_and_keeps_the_stride() -> None:
    got = video_indices(100.0, 2.0, 16.0, 64, num_frames=8, frame_rate=16.0, overflow="clamp")
    assert got[-1] == 63 and all(b - a == 2 for a, b in zip(got, got[1:]))


def test_slow_speed_repeats_frames() -> None:
    got = video_indices(0.0, 0.5, 8.0, 100, num_frames=8, frame_rate=8.0)
    assert len(set(got)) < len(got)


@pytest.mark.parametrize("speed", [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
@pytest.mark.parametrize("mode", ["resample", "time_stretch"])
def test_audio_length_is_exact_for_every_speed(speed: float, mode: str) -> None:
    wave = torch.randn(1, 8000 * 6)
    out = cut_audio(wave, 8000, 0.3, speed, 1.0, mode)  # type: ignore[arg-type]
    assert out.shape == (1, 8000)


def test_short_audio_is_zero_padded() -> None:
    out = cut_audio(torch.ones(1, 1000), 8000, 0.0, 2.0, 1.0)
    assert out.shape == (1, 8000) and out[0, -100:].abs().max() == 0


def test_speed_two_doubles_the_pitch() -> None:
    out = speed_audio(sine(440.0, 2.0, 16000), 16000, 2.0, 16000)
    assert _peak_hz(out, 16000) == pytest.approx(880.0, abs=2.0)


def test_time_stretch_keeps_the_pitch() -> None:
    out = speed_audio(sine(440.0, 2.0, 16000), 16000, 2.0, 16000, mode="time_stretch")
    assert _peak_hz(out, 16000) == pytest.approx(440.0, abs=5.0)


@pytest.mark.parametrize("speed", [1.5, 2.0, 3.0])
def test_speed_matches_torchaudio(speed: float) -> None:
    AF = pytest.importorskip("torchaudio.functional")
    wave = torch.randn(1, 8000 * 3)
    ours = speed_audio(wave, 8000, speed, int(8000 * 3 / speed))
    theirs, _ = AF.speed(wave, 8000, speed)
    n = min(ours.shape[-1], theirs.shape[-1])
    torch.testing.assert_close(ours[..., :n], theirs[..., :n], atol=1e-5, rtol=0)


def test_fit_length_trims_and_pads() -> None:
    assert fit_length(torch.ones(1, 10), 4).shape == (1, 4)
    assert fit_length(torch.ones(1, 3), 5).tolist() == [[1, 1, 1, 0, 0]]


def test_sample_speed_draws_only_the_choices() -> None:
    rng = random.Random(0)
    draws = {sample_speed(rng, (2.0, 3.0, 4.0)) for _ in range(100)}
    assert draws == {2.0, 3.0, 4.0}


def test_views_share_the_start_time_and_fit() -> None:
    cfg = CoAugConfig(num_frames=8, frame_rate=8.0, audio_duration=1.0)
    for seed in range(20):
        plans = plan_views(cfg, 25.0, 250, [1.0, 4.0], random.Random(seed))
        assert plans[0].start == plans[1].start
        assert plans[1].start + 4.0 * cfg.span <= 10.0 + 1e-9
        assert max(max(p.frame_indices) for p in plans) < 250


def test_centre_alignment_shares_the_window_centre() -> None:
    cfg = CoAugConfig(num_frames=8, frame_rate=8.0, audio_duration=1.0, align="centre")
    plans = plan_views(cfg, 25.0, 250, [1.0, 3.0], random.Random(0))
    centres = [p.start + p.speed * cfg.span / 2 for p in plans]
    assert centres[0] == pytest.approx(centres[1])


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="overflow"):
        CoAugConfig(overflow="wrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="speeds"):
        CoAugConfig(speeds=())


def test_spatial_augment_uses_one_crop_for_all_frames() -> None:
    cfg = CoAugConfig(crop_size=16, color_jitter=(0.4, 0.4, 0.4, 0.2))
    frame = torch.randint(0, 255, (1, 32, 32, 3), dtype=torch.uint8)
    out = SpatialAugment(cfg)(frame.repeat(4, 1, 1, 1))
    assert out.shape == (3, 4, 16, 16)
    torch.testing.assert_close(out[:, 0], out[:, 3])


def test_log_spectrogram_is_time_first_200_by_257_for_two_seconds() -> None:
    out = LogSpectrogram(24_000)(torch.randn(1, 48_000))
    assert out.shape == (1, 200, 257)


def test_log_spectrogram_matches_hand_computation() -> None:
    wave = torch.randn(1, 8000)
    out = LogSpectrogram(8000, n_fft=256, hop_length=80)(wave)
    power = (
        torch.stft(
            wave, 256, 80, window=torch.hann_window(256), center=True, return_complex=True
        ).abs()
        ** 2
    )
    bins = torch.cat([power[:, :1], 0.5 * (power[:, 1::2] + power[:, 2::2])], dim=1)[..., :100]
    db = 10 * torch.log10(bins.clamp_min(1e-10))
    db = torch.maximum(db, db.max() - 100)
    torch.testing.assert_close(out, db.transpose(-1, -2), atol=1e-3, rtol=1e-4)


def test_pair_average_rejects_even_bins() -> None:
    with pytest.raises(ValueError, match="odd"):
        pair_average_bins(torch.ones(1, 4, 3))


def test_mel_filterbank_matches_torchaudio() -> None:
    AF = pytest.importorskip("torchaudio.functional")
    mel = LogMelSpectrogram(16000, n_fft=512, n_mels=64)
    expected = AF.melscale_fbanks(257, 0.0, 8000.0, 64, 16000, norm=None, mel_scale="htk")
    torch.testing.assert_close(mel.mel.mel_scale.fb, expected, atol=1e-6, rtol=0)
    assert mel(torch.randn(1, 16000)).shape == (1, 100, 64)


@pytest.mark.parametrize("mode", ["resample", "time_stretch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_cut_audio_keeps_the_waveform_dtype(mode: str, dtype: torch.dtype) -> None:
    wave = sine(300.0, 3.0, 8000)
    out = cut_audio(wave.to(dtype), 8000, 0.25, 2.0, 1.0, mode)  # type: ignore[arg-type]
    reference = cut_audio(wave, 8000, 0.25, 2.0, 1.0, mode)  # type: ignore[arg-type]
    assert out.dtype == dtype and out.shape == (1, 8000)
    # float32 vs float64 resampling differs by rounding only; the phase vocoder accumulates phase,
    # so its float32 and float64 outputs drift apart by about 0.02 at the end of the window.
    tolerance = 1e-5 if dtype == torch.float64 and mode == "resample" else 0.05
    assert (out.float() - reference).abs().max() < tolerance


def test_float64_resampling_matches_torchaudio_in_float64() -> None:
    """A float64 window is resampled with a float64 kernel: a float32 kernel would be ~1e-7 off."""
    AF = pytest.importorskip("torchaudio.functional")
    wave = torch.randn(1, 8000 * 3, dtype=torch.float64)
    ours = speed_audio(wave, 8000, 2.0, 12000)
    theirs = AF.resample(wave, 16000, 8000)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, theirs[..., :12000], atol=1e-12, rtol=0)


def test_integer_audio_is_refused() -> None:
    with pytest.raises(TypeError, match="floating"):
        speed_audio(torch.ones(1, 100, dtype=torch.int16), 8000, 2.0, 50)
