"""Grading: each notebook alone, a class at once with 1 and 2 workers, and what isolation costs.

- per notebook: ``python -m utils.grade NB --json`` on each solution notebook, run
  through the grader's launcher in a cgroup capped at GRADING_CAP_GB — wall time, the score, whether it
  completed under the cap, the cgroup's peak (page cache included) and peak anonymous memory. The
  grader's kernel gets its own cgroup from the grader's launcher, which the machine nests under the
  grader's (`nested_kernel_cgroup`, seen while it runs), so grader and kernel are charged to the one cap;
- throughput (resident memory sampled): a class folder (one learner per notebook below) graded with
  ``--jobs 1`` and ``--jobs 2`` — notebooks per minute, and whether both runs gave the same reports;
- isolation: one notebook graded isolated (bubblewrap) and with ``--no-isolation`` — time and memory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.measure import GB, PeakMemory, children, stopwatch
from utils.course import chapter_id, notebooks
from utils.grading.capped import AnonymousPeak, cgroup_available, drop_page_cache, peak_gb
from utils.grading.sandbox import Limits, Sandbox, launcher_flags
from utils.paths import CHAPTERS_DIR, ROOT, SOLUTIONS_DIR

GRADING_CAP_GB = 2.5
QUICK = "04d"  # the notebook a quick run grades
CLASS = ["00", "02", "04c", "04d"]  # chapters in the benchmark's class: two with the language model's heavy checks, two light


def grade(path: Path, *flags: str) -> tuple[dict[str, Any], float, float]:
    """(the JSON report, seconds, peak GB of the grader and everything it started)."""
    command = [sys.executable, "-m", "utils.grade", str(path), "--json", *flags]
    with PeakMemory(children) as memory, stopwatch() as timing:
        run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads(run.stdout) if run.stdout.strip() else {}
    return report, timing["seconds"], memory.peak / GB


def grade_capped(source: Path) -> dict[str, Any]:
    """``python -m utils.grade SOURCE --json`` in a cgroup capped at GRADING_CAP_GB (grader and its kernel)."""
    with tempfile.TemporaryDirectory() as tmp:
        limits = Limits(memory_gb=GRADING_CAP_GB, cpu_seconds=36000, tasks=2048, file_gb=8.0)
        sandbox = Sandbox(scratch=Path(tmp), limits=limits, isolate=False, name=f"course-bench-grade-{os.getpid()}")
        command = [sys.executable, "-m", "utils.grading.launch", *launcher_flags(limits, sandbox.name, sandbox.report_file),
                   "--", sys.executable, "-m", "utils.grade", str(source), "--json"]
        nested: list[str] = []
        done = threading.Event()

        def watch_nesting() -> None:  # the grader's kernel's cgroup appears inside the grader's while it runs
            while not done.is_set() and not nested:
                folder = sandbox.cgroups().get("memory")
                if folder:
                    nested.extend(str(p) for p in Path(folder).iterdir() if p.is_dir())
                done.wait(0.2)

        watcher = threading.Thread(target=watch_nesting, daemon=True)
        drop_page_cache()
        start = time.perf_counter()
        with AnonymousPeak(sandbox) as anonymous:
            watcher.start()
            run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
            done.set()
            watcher.join()
        seconds = time.perf_counter() - start
        peak = peak_gb(sandbox.launched())
        hit = sandbox.hit_memory_limit()
        folder = sandbox.cgroups().get("memory")
        sandbox.cleanup()  # the grader's cgroups and its kernel's, nested inside them
    try:
        report = json.loads(run.stdout)
        score: Any = f"{report['score']:g} / {report['max_score']:g}"
        completed: bool | str = True if not hit else "memory limit hit: a process was killed, the grader reported"
    except (ValueError, KeyError, TypeError):
        score = None
        completed = "memory limit hit" if hit else f"grader exit {run.returncode}: {(run.stderr or run.stdout)[-200:]}"
    return {"notebook": f"{source.parent.name}/{source.name}", "cap_gb": GRADING_CAP_GB if folder else None,
            "completed": completed,
            "score": score, "seconds": round(seconds, 1), "cgroup_peak_gb": None if peak is None else round(peak, 3),
            "anonymous_peak_gb": round(anonymous.peak / GB, 3) if anonymous.peak else None,
            "nested_kernel_cgroup": bool(nested)}


def bench_grading(quick: bool = False, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Each solution (full marks) graded under GRADING_CAP_GB: the heaviest grade of its chapter, since every
    check runs the learner's code to the end. (Fresh learner notebooks stop at each stub: measured beside their
    solutions on 2026-12-01, each one's peak was at or below its solution's; the throughput section grades four.)"""
    paths = [p for p in notebooks(SOLUTIONS_DIR) if not only or chapter_id(p.name) in only]  # ``only``: chapter ids
    paths = [p for p in paths if p.name.startswith(QUICK)][:1] if quick else paths
    why = cgroup_available(GRADING_CAP_GB)
    if why:
        return [{"notebook": f"{p.parent.name}/{p.name}", "cap_gb": None, "completed": why} for p in paths]
    rows = []
    for path in paths:
        rows.append(grade_capped(path))
        print(f"  {rows[-1]}", flush=True)
    return rows


def class_folder(root: Path, quick: bool) -> int:
    """A class in nbgrader's layout: a learner with the solution and one with the fresh copy of each chapter."""
    chosen = [p for p in notebooks(SOLUTIONS_DIR) if p.name.split("_")[0] in (CLASS[-1:] if quick else CLASS)]
    count = 0
    for source in chosen:
        for learner, folder in [("reference", SOLUTIONS_DIR), ("fresh", CHAPTERS_DIR)]:
            target = root / f"{learner}-{source.stem[:3]}" / source.stem / source.name
            target.parent.mkdir(parents=True)
            shutil.copy(folder / source.name, target)
            count += 1
    return count


def bench_throughput(quick: bool = False) -> list[dict[str, Any]]:
    rows, reports = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        n = class_folder(Path(tmp), quick)
        for jobs in [1, 2]:
            report, seconds, peak = grade(Path(tmp), "--jobs", str(jobs))
            reports[jobs] = report
            rows.append({"workers": jobs, "notebooks": n, "seconds": round(seconds, 1),
                         "notebooks_per_minute": round(60 * n / seconds, 2), "peak_gb": round(peak, 2)})
            print(f"  {rows[-1]}", flush=True)
    rows[-1]["same_reports_as_1_worker"] = reports[1] == reports[2]
    return rows


def bench_isolation(quick: bool = False) -> list[dict[str, Any]]:
    path = SOLUTIONS_DIR / ("04d_gradient_routing.ipynb" if quick else "00_transformerlens_warmup.ipynb")
    rows = []
    for mode, flags in [("isolated", ()), ("not isolated", ("--no-isolation",))]:
        report, seconds, peak = grade(path, *flags)
        rows.append({"notebook": path.name, "mode": mode, "seconds": round(seconds, 1), "peak_gb": round(peak, 2),
                     "score": f"{report.get('score', float('nan')):g} / {report.get('max_score', float('nan')):g}"})
        print(f"  {rows[-1]}", flush=True)
    return rows
