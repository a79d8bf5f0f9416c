"""utils/paths.py: `computing` makes a second process wait for what the first computes into the cache."""

from __future__ import annotations

import subprocess
import sys
import time

from utils.paths import ROOT

WORKER = """
import sys, time
from pathlib import Path
from utils.paths import computing
target, log = Path(sys.argv[1]), Path(sys.argv[2])
with computing(target):
    if not target.exists():
        with log.open("a") as out:
            out.write("computed\\n")
        time.sleep(1.0)  # a slow computation: the other process arrives meanwhile
        target.write_text("result")
with log.open("a") as out:
    out.write("read " + target.read_text() + "\\n")
"""


def _race(tmp_path, worker: str) -> list[str]:
    target, log = tmp_path / "cache" / "thing.bin", tmp_path / "log.txt"
    target.parent.mkdir()
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    runs = []
    for _ in range(2):
        runs.append(subprocess.Popen([sys.executable, "-c", worker, str(target), str(log)], env=env))
        time.sleep(0.2)
    assert [run.wait(timeout=60) for run in runs] == [0, 0]
    return sorted(log.read_text().splitlines())


def test_two_processes_compute_the_same_cache_entry_once(tmp_path):
    assert _race(tmp_path, WORKER) == ["computed", "read result", "read result"]


def test_without_the_lock_both_would_compute(tmp_path):
    """The test above can fail: with `computing` replaced by a no-op both processes compute."""
    no_lock = "import contextlib\ncomputing = lambda path: contextlib.nullcontext()"
    unlocked = WORKER.replace("from utils.paths import computing", no_lock)
    assert _race(tmp_path, unlocked) == ["computed", "computed", "read result", "read result"]


def test_where_no_lock_can_be_made_the_block_runs_without_one(tmp_path):
    """A read-only cache (a grading sandbox) cannot hold a lock file; here its place is taken by a folder."""
    from utils.paths import computing

    (tmp_path / "thing.bin").write_text("there")
    (tmp_path / "thing.bin.lock").mkdir()
    with computing(tmp_path / "thing.bin"):
        assert (tmp_path / "thing.bin").read_text() == "there"
