"""Grading: each notebook alone, a class at once with 1 and 2 workers, and what isolation costs.

- per notebook: ``python -m utils.grade NB --json`` on each solution and fresh learner notebook — wall
  time, peak memory of the grader plus its kernel, the score;
- throughput: a class folder (one learner per notebook below) graded with ``--jobs 1`` and ``--jobs 2``
  — notebooks per minute, and whether both runs gave the same reports;
- isolation: one notebook graded isolated (bubblewrap) and with ``--no-isolation`` — time and memory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import GB, PeakMemory, children, stopwatch
from utils.course import notebooks
from utils.paths import CHAPTERS_DIR, ROOT, SOLUTIONS_DIR

CLASS = ["00", "02", "04c", "04d"]  # chapters in the benchmark's class: two with the language model's heavy checks, two light


def grade(path: Path, *flags: str) -> tuple[dict[str, Any], float, float]:
    """(the JSON report, seconds, peak GB of the grader and everything it started)."""
    command = [sys.executable, "-m", "utils.grade", str(path), "--json", *flags]
    with PeakMemory(children) as memory, stopwatch() as timing:
        run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads(run.stdout) if run.stdout.strip() else {}
    return report, timing["seconds"], memory.peak / GB


def bench_grading(quick: bool = False) -> list[dict[str, Any]]:
    rows = []
    paths = notebooks(SOLUTIONS_DIR) + notebooks(CHAPTERS_DIR)
    for path in paths[:1] if quick else paths:
        report, seconds, peak = grade(path)
        score = f"{report.get('score', float('nan')):g} / {report.get('max_score', float('nan')):g}"
        rows.append({"notebook": f"{path.parent.name}/{path.name}", "seconds": round(seconds, 1), "peak_gb": round(peak, 2)})
        rows[-1]["score"] = score
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
