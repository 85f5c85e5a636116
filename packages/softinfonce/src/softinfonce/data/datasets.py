"""Clip lists for Kinetics / Kinetics-Sounds / UCF101 / HMDB51 and the co-augmented clip dataset."""

from __future__ import annotations

import csv
import logging
import random
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch.utils.data import Dataset, Sampler

from softinfonce.augment import (
    CoAugConfig,
    EvalTransform,
    SpatialAugment,
    cut_audio,
    plan_views,
    sample_speed,
)
from softinfonce.data.audio import LogSpectrogram
from softinfonce.data.decode import VideoBackend, probe_video, read_audio, read_frames

__all__ = [
    "ClipRecord",
    "VIDEO_EXTENSIONS",
    "kinetics_folder",
    "read_clip_csv",
    "kinetics_sounds",
    "ucf101_split",
    "hmdb51_split",
    "SpeedCoAugDataset",
    "SpeedBatchSampler",
    "collate_views",
]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@dataclass(frozen=True)
class ClipRecord:
    """One video file and its label; ``start``/``end`` (s) restrict it to a segment."""

    path: str
    label: int
    start: float | None = None
    end: float | None = None


def kinetics_folder(root: str | Path, split: str = "train") -> tuple[list[ClipRecord], list[str]]:
    """``<root>/<split>/<class>/<ytid>_<start6>_<end6>.mp4``; label = sorted class index."""
    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(
            f"{base} is not a folder; expected <root>/<split>/<class_name>/*.mp4"
        )
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{base} has no class folders")
    records = [
        ClipRecord(str(path), label)
        for label, name in enumerate(classes)
        for path in sorted((base / name).iterdir())
        if path.suffix.lower() in VIDEO_EXTENSIONS
    ]
    return records, classes


def read_clip_csv(path: str | Path, root: str | Path | None = None) -> list[ClipRecord]:
    """CSV with a header ``path,label[,start,end]``; relative paths resolve against ``root``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"clip list not found: {path}")
    base = Path(root) if root is not None else path.parent
    records = []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(
                f"{path} needs a header with columns path,label[,start,end], got {reader.fieldnames}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                label = int(row["label"])
                start = float(row["start"]) if row.get("start") else None
                end = float(row["end"]) if row.get("end") else None
            except ValueError as err:
                raise ValueError(f"{path}:{line}: bad label/start/end in {row}") from err
            records.append(ClipRecord(str(base / row["path"]), label, start, end))
    return records


def kinetics_sounds(
    root: str | Path, class_list: str | Path, split: str = "train"
) -> tuple[list[ClipRecord], list[str]]:
    """The Kinetics-Sounds subset: the classes named (one per line) in ``class_list``."""
    wanted = [line.strip() for line in Path(class_list).read_text().splitlines() if line.strip()]
    records, classes = kinetics_folder(root, split)
    missing = sorted(set(wanted) - set(classes))
    if missing:
        raise ValueError(f"classes in {class_list} missing under {root}/{split}: {missing[:5]}")
    keep = sorted(wanted)
    remap = {classes.index(name): i for i, name in enumerate(keep)}
    return [
        ClipRecord(r.path, remap[r.label], r.start, r.end) for r in records if r.label in remap
    ], keep


def ucf101_split(
    root: str | Path, split_dir: str | Path, fold: int = 1, train: bool = True
) -> tuple[list[ClipRecord], list[str]]:
    """UCF101 from ``classInd.txt`` and ``{train,test}list0{fold}.txt``; label from the folder name."""
    if fold not in (1, 2, 3):
        raise ValueError(f"fold must be 1, 2 or 3, got {fold}")
    split_dir = Path(split_dir)
    index_file = split_dir / "classInd.txt"
    if not index_file.exists():
        raise FileNotFoundError(f"{index_file} not found (it ships in ucfTrainTestlist.zip)")
    by_name: dict[str, int] = {}
    for line in index_file.read_text().splitlines():
        if line.strip():
            number, name = line.split()
            by_name[name] = int(number) - 1
    classes = sorted(by_name, key=lambda name: by_name[name])
    list_file = split_dir / f"{'train' if train else 'test'}list0{fold}.txt"
    records = []
    for line in list_file.read_text().splitlines():
        if not line.strip():
            continue
        rel = line.split()[0]
        class_name = rel.split("/")[0]
        if class_name not in by_name:
            raise ValueError(f"{list_file}: class {class_name!r} is not in classInd.txt")
        records.append(ClipRecord(str(Path(root) / rel), by_name[class_name]))
    return records, classes


def hmdb51_split(
    root: str | Path, split_dir: str | Path, fold: int = 1, train: bool = True
) -> tuple[list[ClipRecord], list[str]]:
    """HMDB51 from ``<class>_test_split{fold}.txt`` (1 = train, 2 = test, 0 = unused)."""
    if fold not in (1, 2, 3):
        raise ValueError(f"fold must be 1, 2 or 3, got {fold}")
    files = sorted(Path(split_dir).glob(f"*_test_split{fold}.txt"))
    if not files:
        raise FileNotFoundError(f"no *_test_split{fold}.txt files in {split_dir}")
    suffix = f"_test_split{fold}.txt"
    classes = sorted(f.name[: -len(suffix)] for f in files)
    wanted = "1" if train else "2"
    records = []
    for label, name in enumerate(classes):
        for line in (Path(split_dir) / f"{name}{suffix}").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == wanted:
                records.append(ClipRecord(str(Path(root) / name / parts[0]), label))
    return records, classes


class SpeedCoAugDataset(Dataset):
    """Decodes a clip and returns its speed-1 view and a sped-up view (or one view when
    ``config.use_augmented_view`` is False, or ``train=False``).

    Item: ``video (V, 3, T, crop, crop)``, ``audio (V, 1, time, freq)``, ``speeds (V,)``,
    ``clip_id``, ``label``, ``audio_missing``. An index may be ``(index, speed)`` (per-batch
    speeds, :class:`SpeedBatchSampler`). ``train=False`` gives the eval transform at ``eval_speed``.
    ``cache=True`` keeps decoded files in memory (small data sets: the demo).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        config: CoAugConfig,
        *,
        train: bool = True,
        backend: VideoBackend = "auto",
        eval_speed: float = 1.0,
        cache: bool = False,
    ) -> None:
        if not records:
            raise ValueError("records is empty")
        self.records = list(records)
        self.config = config
        self.train = train
        self.backend: VideoBackend = backend
        self.eval_speed = eval_speed
        self.cache = cache
        self._cache: dict[int, tuple[float, torch.Tensor, torch.Tensor, bool]] = {}
        self.spatial = SpatialAugment(config) if train else EvalTransform(config)
        self.spectrogram = LogSpectrogram(config.sample_rate, n_fft=config.n_fft)

    def __len__(self) -> int:
        return len(self.records)

    def _source(self, index: int) -> tuple[float, int, int]:
        record = self.records[index]
        info = probe_video(record.path)
        first = int(round((record.start or 0.0) * info.fps))
        last = (
            info.num_frames
            if record.end is None
            else min(info.num_frames, int(round(record.end * info.fps)))
        )
        if last <= first:
            raise ValueError(
                f"{record.path}: segment [{record.start}, {record.end}] s has no frames"
            )
        return info.fps, first, last

    def _decoded(self, index: int) -> tuple[float, torch.Tensor, torch.Tensor, bool]:
        """Whole file in memory: (fps, frames (N,H,W,3), audio (1,S), missing)."""
        if index not in self._cache:
            record = self.records[index]
            info = probe_video(record.path)
            frames = read_frames(
                record.path,
                range(info.num_frames),
                size=self.config.decode_size,
                backend=self.backend,
            )
            audio, missing = read_audio(
                record.path, self.config.sample_rate, missing_audio=self.config.missing_audio
            )
            self._cache[index] = (info.fps, frames, audio, missing)
        return self._cache[index]

    def share_decoded(self, other: SpeedCoAugDataset) -> None:
        """Use the decoded files of ``other`` (same records, both with ``cache=True``), so data
        sets with different transforms over the same clips decode each file once."""
        if not (self.cache and other.cache):
            raise ValueError("share_decoded needs cache=True on both data sets")
        if [r.path for r in other.records] != [r.path for r in self.records]:
            raise ValueError("share_decoded needs data sets over the same records, in order")
        mine, theirs = self.config, other.config
        if (mine.sample_rate, mine.decode_size, mine.missing_audio) != (
            theirs.sample_rate,
            theirs.decode_size,
            theirs.missing_audio,
        ):
            raise ValueError(
                "share_decoded needs the same sample_rate, decode_size and missing_audio"
            )
        self._cache = other._cache

    def preload(self) -> None:
        """Decode every file now (before DataLoader workers fork, so they share the cache)."""
        if not self.cache:
            raise ValueError("preload needs cache=True")
        for index in range(len(self.records)):
            self._decoded(index)

    def __getitem__(self, item: int | tuple[int, float]) -> dict[str, torch.Tensor]:
        index, speed = item if isinstance(item, tuple) else (item, None)
        rng = random.Random(int(torch.randint(0, 2**62, (1,))))
        cfg = self.config
        if not self.train:
            speeds = [self.eval_speed]
        elif cfg.use_augmented_view:
            speeds = [1.0, speed if speed is not None else sample_speed(rng, cfg.speeds)]
        else:
            speeds = [1.0]
        record = self.records[index]
        fps, first, last = self._source(index)
        # Eval is deterministic: the window sits in the middle of the segment.
        plans = plan_views(cfg, fps, last - first, speeds, rng, centred=not self.train)
        wanted = sorted({first + i for p in plans for i in p.frame_indices})
        if self.cache:
            _, all_frames, audio, missing = self._decoded(index)
            frames = all_frames[wanted]
        else:
            frames = read_frames(record.path, wanted, size=cfg.decode_size, backend=self.backend)
            audio, missing = read_audio(
                record.path, cfg.sample_rate, missing_audio=cfg.missing_audio
            )
        row = {index: r for r, index in enumerate(wanted)}
        offset = first / fps
        videos, audios = [], []
        for plan in plans:
            view = frames[[row[first + i] for i in plan.frame_indices]]
            videos.append(self.spatial(view))
            wave = cut_audio(
                audio,
                cfg.sample_rate,
                offset + plan.start,
                plan.speed,
                cfg.audio_duration,
                cfg.audio_mode,
            )
            if self.train:
                wave = wave * rng.uniform(*cfg.volume_jitter)
            audios.append(self.spectrogram(wave))
        return {
            "video": torch.stack(videos),
            "audio": torch.stack(audios),
            "speeds": torch.tensor(speeds, dtype=torch.float32),
            "clip_id": torch.tensor(index),
            "label": torch.tensor(record.label),
            "audio_missing": torch.tensor(missing),
        }


class SpeedBatchSampler(Sampler[list[tuple[int, float]]]):
    """Batches of ``(index, speed)`` with one augmented speed per batch (``per_batch`` sampling)."""

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        speeds: Sequence[float],
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        self.sampler, self.batch_size, self.speeds = sampler, batch_size, tuple(speeds)
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[tuple[int, float]]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        batch: list[int] = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                speed = sample_speed(rng, self.speeds)
                yield [(i, speed) for i in batch]
                batch = []
        if batch and not self.drop_last:
            speed = sample_speed(rng, self.speeds)
            yield [(i, speed) for i in batch]

    def __len__(self) -> int:
        count = len(cast(Sized, self.sampler))
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)


def collate_views(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a batch of N clips into 2N views, all speed-1 views first, then the sped-up ones.

    Returns ``video (V*N, 3, T, H, W)``, ``audio (V*N, 1, time, freq)``, ``speeds``, ``clip_ids``,
    ``view_ids`` (all ``(V*N,)``), and per-clip ``label (N,)``, ``audio_missing (N,)``.
    """
    video = torch.stack([it["video"] for it in items])  # (N, V, ...)
    audio = torch.stack([it["audio"] for it in items])
    speeds = torch.stack([it["speeds"] for it in items])
    n, v = speeds.shape
    clip_ids = torch.stack([it["clip_id"] for it in items])
    return {
        "video": video.transpose(0, 1).reshape(n * v, *video.shape[2:]),
        "audio": audio.transpose(0, 1).reshape(n * v, *audio.shape[2:]),
        "speeds": speeds.T.reshape(-1),
        "clip_ids": clip_ids.repeat(v),
        "view_ids": torch.arange(v).repeat_interleave(n),
        "label": torch.stack([it["label"] for it in items]),
        "audio_missing": torch.stack([it["audio_missing"] for it in items]),
    }
