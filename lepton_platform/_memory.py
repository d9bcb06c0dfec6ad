"""Peak resident memory of a block of work, sampled in a background thread.

Freed memory is handed back to the operating system before a measurement starts (a garbage
collection, then glibc's ``malloc_trim``), so that the rise a block causes (``added_mb``) is its
own and not hidden by memory that an earlier block freed but the allocator kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import threading
from types import TracebackType

import psutil


def release_freed_memory() -> None:
    """Collect garbage and return freed heap pages to the system (glibc only; elsewhere the
    collection alone)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):  # not glibc
            ctypes.CDLL(name).malloc_trim(0)


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
        release_freed_memory()
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
