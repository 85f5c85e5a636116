from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from softinfonce.augment import CoAugConfig
from softinfonce.data import (
    ClipRecord,
    SpeedBatchSampler,
    SpeedCoAugDataset,
    SyntheticSpec,
    collate_views,
    generate_split,
    hmdb51_split,
    kinetics_folder,
    kinetics_sounds,
    read_clip_csv,
    ucf101_split,
)
from softinfonce.data.synthetic import (
    SyntheticClip,
    class_identity,
    class_rate,
    read_meta,
    render_clip,
)
from torch.utils.data import SequentialSampler

SPEC = SyntheticSpec(num_classes=2, duration=2.2, fps=20, size=32, sample_rate=8000)
CFG = CoAugConfig(
    num_frames=4,
    frame_rate=8.0,
    audio_duration=0.5,
    sample_rate=8000,
    n_fft=256,
    crop_size=16,
    speeds=(2.0, 3.0, 4.0),
    color_jitter=(0.0, 0.0, 0.0, 0.0),
)


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kinetics")
    generate_split(root, "train", 4, spec=SPEC, seed=1)
    return root


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_kinetics_folder_labels_follow_sorted_classes(tmp_path: Path) -> None:
    for name in ("zumba", "abseiling"):
        _touch(tmp_path / "train" / name / "abc_000010_000020.mp4")
    _touch(tmp_path / "train" / "zumba" / "notes.txt")
    records, classes = kinetics_folder(tmp_path, "train")
    assert classes == ["abseiling", "zumba"]
    assert [(Path(r.path).parent.name, r.label) for r in records] == [
        ("abseiling", 0),
        ("zumba", 1),
    ]
    with pytest.raises(FileNotFoundError, match="class_name"):
        kinetics_folder(tmp_path, "val")


def test_kinetics_sounds_keeps_the_listed_classes(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _touch(tmp_path / "train" / name / "x_000000_000010.mp4")
    (tmp_path / "ks.txt").write_text("c\na\n")
    records, classes = kinetics_sounds(tmp_path, tmp_path / "ks.txt")
    assert classes == ["a", "c"] and sorted(r.label for r in records) == [0, 1]


def test_clip_csv_with_optional_segment(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("path,label,start,end\nv/a.mp4,3,1.5,4\nv/b.mp4,0,,\n")
    records = read_clip_csv(tmp_path / "list.csv")
    assert records[0] == ClipRecord(str(tmp_path / "v/a.mp4"), 3, 1.5, 4.0)
    assert records[1].start is None
    (tmp_path / "bad.csv").write_text("file,y\n")
    with pytest.raises(ValueError, match="path,label"):
        read_clip_csv(tmp_path / "bad.csv")


def test_ucf101_split_reads_labels_from_the_folder(tmp_path: Path) -> None:
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text(
        "Archery/v_Archery_g01_c01.avi 2\nApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
    )
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g02_c01.avi\n")
    train, classes = ucf101_split(tmp_path / "videos", lists, fold=1, train=True)
    test, _ = ucf101_split(tmp_path / "videos", lists, fold=1, train=False)
    assert classes == ["ApplyEyeMakeup", "Archery"]
    assert [r.label for r in train] == [1, 0] and [r.label for r in test] == [1]
    assert train[0].path.endswith("videos/Archery/v_Archery_g01_c01.avi")


def test_hmdb51_split_uses_the_1_and_2_codes(tmp_path: Path) -> None:
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1\nb.avi 2\nc.avi 0\n")
    (splits / "cartwheel_test_split1.txt").write_text("d.avi 1\n")
    train, classes = hmdb51_split(tmp_path / "v", splits, 1, train=True)
    test, _ = hmdb51_split(tmp_path / "v", splits, 1, train=False)
    assert classes == ["brush_hair", "cartwheel"]
    assert [Path(r.path).name for r in train] == ["a.avi", "d.avi"] and [
        r.label for r in train
    ] == [0, 1]
    assert [Path(r.path).name for r in test] == ["b.avi"]


def test_generate_is_sharded_and_resumable(tmp_path: Path) -> None:
    first = generate_split(tmp_path, "train", 5, spec=SPEC, shard=(0, 2))
    assert len(first) == 3 and not (tmp_path / "train" / "meta.csv").exists()
    stamp = first[0].stat().st_mtime_ns
    second = generate_split(tmp_path, "train", 5, spec=SPEC, shard=(1, 2))
    assert len(second) == 2 and len(read_meta(tmp_path / "train")) == 5
    generate_split(tmp_path, "train", 5, spec=SPEC)
    assert first[0].stat().st_mtime_ns == stamp  # existing clips are kept


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_dataset_item_layout(clip_root: Path, backend: str) -> None:
    records, _ = kinetics_folder(clip_root, "train")
    item = SpeedCoAugDataset(records, CFG, backend=backend)[0]  # type: ignore[arg-type]
    assert item["video"].shape == (2, 3, 4, 16, 16)
    assert item["audio"].shape == (2, 1, 50, 65)
    assert item["speeds"][0] == 1.0 and item["speeds"][1] in (2.0, 3.0, 4.0)
    assert int(item["clip_id"]) == 0 and not item["audio_missing"]


def test_collate_puts_speed_one_views_first(clip_root: Path) -> None:
    records, _ = kinetics_folder(clip_root, "train")
    dataset = SpeedCoAugDataset(records, CFG, cache=True)
    batch = collate_views([dataset[i] for i in range(3)])
    assert batch["video"].shape == (6, 3, 4, 16, 16)
    assert batch["clip_ids"].tolist() == [0, 1, 2, 0, 1, 2]
    assert batch["view_ids"].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch["speeds"][:3].tolist() == [1.0, 1.0, 1.0] and (batch["speeds"][3:] > 1).all()


def test_per_batch_speed_sampler(clip_root: Path) -> None:
    records, _ = kinetics_folder(clip_root, "train")
    dataset = SpeedCoAugDataset(records, CFG)
    sampler = SpeedBatchSampler(SequentialSampler(range(4)), 2, (2.0, 3.0), seed=0)
    for indices in sampler:
        speeds = {float(dataset[i]["speeds"][1]) for i in indices}
        assert len(speeds) == 1
    assert len(sampler) == 2


def test_eval_dataset_gives_one_deterministic_view(clip_root: Path) -> None:
    records, _ = kinetics_folder(clip_root, "train")
    dataset = SpeedCoAugDataset(records, CFG, train=False, eval_speed=2.0)
    first, second = dataset[1], dataset[1]
    assert first["video"].shape == (1, 3, 4, 16, 16) and first["speeds"].tolist() == [2.0]
    torch.testing.assert_close(first["video"], second["video"])
    torch.testing.assert_close(first["audio"], second["audio"])


def test_audio_less_clip_gives_zeros_and_a_flag(silent_clip) -> None:
    records = [ClipRecord(str(silent_clip), 0)]
    item = SpeedCoAugDataset(records, CoAugConfig(**{**CFG.__dict__, "missing_audio": "zeros"}))[0]
    assert item["audio_missing"] and item["audio"].shape == (2, 1, 50, 65)
    with pytest.raises(ValueError, match="no audio"):
        SpeedCoAugDataset(records, CFG)[0]


def test_corrupt_clip_raises_in_the_dataset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match="corrupt|cannot"):
        SpeedCoAugDataset([ClipRecord(str(bad), 0)], CFG)[0]


def _object_colour(frames: np.ndarray) -> np.ndarray:
    """Mean RGB of the pixels that differ most from the background."""
    lit = frames.astype(np.float64).sum(-1) > frames.astype(np.float64).sum(-1).mean() + 60
    return frames[lit].astype(np.float64).mean(0)


def _harmonic_profile(audio: np.ndarray, pitch: float, sample_rate: int) -> np.ndarray:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    hz = np.fft.rfftfreq(len(audio), 1 / sample_rate)
    peaks = [spectrum[np.abs(hz - k * pitch) < pitch / 4].max() for k in range(1, 5)]
    return np.array(peaks) / max(peaks)


def _motion_hz(frames: np.ndarray, fps: int) -> float:
    weights = frames.astype(np.float64).sum(-1).sum(1)  # (N, W) column brightness
    x = (weights * np.arange(weights.shape[1])).sum(1) / weights.sum(1)
    spectrum = np.abs(np.fft.rfft(x - x.mean(), n=8 * len(x)))
    return float(np.fft.rfftfreq(8 * len(x), 1 / fps)[spectrum.argmax()])


def test_synthetic_class_survives_a_speed_change_and_speed_stays_visible() -> None:
    spec = SyntheticSpec(num_classes=8, duration=8.0, fps=30, size=32, sample_rate=8000)
    for label in (1, 4):
        clip = SyntheticClip(0, label, 1.0, 0.3, 0.9, 1.0, 120.0, 0.5)
        frames1, audio1 = render_clip(spec, clip)
        frames2, audio2 = render_clip(spec, replace(clip, speed=2.0))
        # identity: the object's colour and the ratios between harmonics do not change
        np.testing.assert_allclose(_object_colour(frames2), _object_colour(frames1), atol=12)
        np.testing.assert_allclose(
            _harmonic_profile(audio2, 240.0, 8000),
            _harmonic_profile(audio1, 120.0, 8000),
            atol=0.05,
        )
        # speed: the motion rate and the pitch double
        rate = class_rate(spec, label)
        assert _motion_hz(frames1, 30) == pytest.approx(rate, rel=0.08)
        assert _motion_hz(frames2, 30) == pytest.approx(2 * rate, rel=0.08)


def test_slow_and_fast_classes_share_the_identity_and_differ_in_rate() -> None:
    spec = SyntheticSpec(num_classes=8)
    for identity in range(4):
        slow, fast = 2 * identity, 2 * identity + 1
        assert class_identity(slow) == class_identity(fast)
        assert class_rate(spec, fast) == pytest.approx(spec.fast_ratio * class_rate(spec, slow))
    assert len({class_identity(label).colour for label in range(0, 8, 2)}) == 4
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticSpec(num_classes=9)


def test_a_batch_holds_several_clips_of_each_class(tmp_path: Path) -> None:
    spec = SyntheticSpec(num_classes=4, duration=1.0, fps=10, size=16, sample_rate=8000)
    generate_split(tmp_path, "train", 12, spec=spec, seed=0)
    rows = read_meta(tmp_path / "train")
    assert sorted(int(r["label"]) for r in rows) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    scales = [float(r["rate_scale"]) for r in rows]
    assert len(set(scales)) == 12 and all(0.88 <= v <= 1.12 for v in scales)  # instances differ
