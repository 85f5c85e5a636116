"""Peak-memory measurement, the same way in every benchmark and report.

::

    with measure_peak_memory("cuda") as meter:
        model(x)
    meter.result.extra_mib  # peak above what was allocated on entry

On CUDA the figure is exact (``torch.cuda.max_memory_allocated`` after a reset: tensors only, not
the caching allocator's reserve). On CPU it is the process's resident set size sampled by a
background thread every ``interval`` seconds (psutil, which ``accelerate`` requires), so short spikes between samples can be
missed and the allocator's cached pages count; compare CPU figures only with each other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType

import torch

__all__ = ["PeakMemory", "measure_peak_memory"]

_MIB = 2**20


@dataclass(frozen=True)
class PeakMemory:
    """What :class:`measure_peak_memory` saw, in bytes."""

    device: str
    baseline_bytes: int
    """Allocated (CUDA) or resident (CPU) on entry."""
    peak_bytes: int
    """The highest value seen inside the block."""
    method: str
    """"cuda.max_memory_allocated" or "rss sampled every N ms"."""

    @property
    def extra_bytes(self) -> int:
        return max(self.peak_bytes - self.baseline_bytes, 0)

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / _MIB

    @property
    def extra_mib(self) -> float:
        return self.extra_bytes / _MIB


class measure_peak_memory:
    """Context manager measuring peak memory of the code inside it on ``device``."""

    def __init__(self, device: str | torch.device = "cpu", *, interval: float = 0.001) -> None:
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"measure_peak_memory supports cpu and cuda, got {self.device}")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("measure_peak_memory on cuda, but CUDA is not available")
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self._result: PeakMemory | None = None
        self._baseline = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def result(self) -> PeakMemory:
        if self._result is None:
            raise RuntimeError("the measurement is available after the with-block ends")
        return self._result

    def _rss(self) -> int:
        import psutil

        return int(psutil.Process().memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> measure_peak_memory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._baseline = self._peak = self._rss()
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            method = "cuda.max_memory_allocated"
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            peak = max(self._peak, self._rss())
            method = f"rss sampled every {self.interval * 1000:g} ms"
        self._result = PeakMemory(
            device=str(self.device), baseline_bytes=self._baseline, peak_bytes=peak, method=method
        )
