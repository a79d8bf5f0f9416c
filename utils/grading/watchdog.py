"""A thread that watches one grading kernel from outside: its memory, CPU time and processes.

It stops the kernel's whole process tree when its resident memory passes the cap, or when it runs
too many processes, and says why in the grade message. Where a cgroup also caps the kernel's memory
(`launch.py`) the cgroup is the hard limit, which nothing outruns; the watchdog is there for the
message, and because near a cgroup's limit a kernel can crawl for a long time (the kernel keeps
evicting and re-reading torch's libraries) before the OOM killer steps in. When it stops, it kills
whatever the kernel left running.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import psutil

from utils.grading.sandbox import Limits

INTERVAL = 0.2  # seconds between samples
# Stop a kernel whose memory passes 90 % of its cap: closer to a cgroup's limit the kernel first
# reclaims the model's file pages and re-reads them (thrashing), which on a busy machine ran past the
# exercise's time limit before the OOM killer acted (seen in CI: "took too long" for a memory bomb).
STOP_AT = 0.9
MAX_PROCESSES = 64  # without a pids cgroup: more processes than this in the kernel's tree stop it


class Watchdog:
    def __init__(self, pid: int, limits: Limits, memory: Callable[[], int | None] = lambda: None):
        """``memory()``: the kernel's memory as its cgroup counts it, if one does (else resident memory
        summed over its processes, which counts pages they share once per process)."""
        self.root = psutil.Process(pid)
        self.limits, self.memory = limits, memory
        self.reason = ""  # set when the watchdog stopped the kernel, in a grade message's words
        self.peak_rss = 0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def _sample(self) -> None:
        processes = self.tree()
        rss, cpu = 0, 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                rss += process.memory_info().rss
                times = process.cpu_times()
                cpu += times.user + times.system
        used = self.memory()
        used = rss if used is None else used
        self.peak_rss, self.cpu_seconds = max(self.peak_rss, used), max(self.cpu_seconds, cpu)
        if len(processes) > MAX_PROCESSES:
            self.kill(f"started more than {MAX_PROCESSES} processes, so the kernel was stopped")
        elif used > STOP_AT * self.limits.memory_bytes:
            self.kill(f"used more than the {self.limits.memory_gb:g} GB of memory a kernel may use, so the kernel was stopped")

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self._sample()

    def kill(self, reason: str = "") -> None:
        """Stop the kernel and everything it started (children first go with it)."""
        if reason and not self.reason:
            self.reason = reason
        for process in reversed(self.tree()):
            with contextlib.suppress(psutil.Error):
                process.kill()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.kill()
