"""Measuring a run from the outside: peak resident memory (sampled), wall time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil

GB = 1024**3


class PeakMemory:
    """Samples the resident memory of processes every 0.1 s in a thread; keeps the peak (bytes).

    ``which()`` returns the processes to add up at each sample (e.g. this process's children).
    """

    def __init__(self, which: Callable[[], list[psutil.Process]]):
        self.which, self.peak, self.current = which, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for process in self.which():
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.current, self.peak = total, max(self.peak, total)
            self._stop.wait(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def this_process() -> list[psutil.Process]:
    return [psutil.Process()]


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    timing: dict[str, float] = {}
    start = time.perf_counter()
    yield timing
    timing["seconds"] = time.perf_counter() - start
