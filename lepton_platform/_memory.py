"""Peak resident memory of a block of work, sampled in a background thread."""

from __future__ import annotations

import os
import threading
from types import TracebackType

import psutil


class PeakMemory:
    """``with PeakMemory() as mem: ...`` then ``mem.peak_mb`` (the highest RSS seen) and
    ``mem.added_mb`` (how far it rose above the RSS at the start)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self._process = psutil.Process(os.getpid())
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def added_mb(self) -> float:
        return max(0.0, self.peak_mb - self.start_mb)

    def _rss_mb(self) -> float:
        return float(self._process.memory_info().rss) / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> PeakMemory:
        self.start_mb = self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())
