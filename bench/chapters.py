"""The chapters end to end, measured as Binder enforces memory: each solution notebook in a fresh kernel
that the grader's launcher moves into a fresh cgroup capped at CHAPTER_CAP_GB, from an empty page cache
(`utils.grading.capped`, the same code the notebook tier of the tests uses).

Resident memory counts the model's file-backed pages and is not what Binder enforces; a cgroup's limit is.
Per notebook: whether it completed under the cap (or why not), wall time, the cgroup's peak charge (page
cache included: it reaches the cap whenever the cache fills it) and its peak anonymous memory (sampled
every 0.1 s; the figure that matters), and the error outputs. Where the machine gives no cgroup the rows
say so and nothing runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import nbformat

from utils.course import chapter_id, notebooks
from utils.grading.capped import cgroup_available, execute_capped
from utils.paths import ROOT, SOLUTIONS_DIR, cache_dir

CHAPTER_CAP_GB = 1.5
QUICK = "04d"  # the chapter a quick run measures (the fastest)


def run_chapter(source: Path) -> dict[str, Any]:
    """One solution notebook end to end in a kernel capped at CHAPTER_CAP_GB."""
    nb = nbformat.read(source, as_version=4)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COURSE_CACHE_DIR": str(cache_dir()), "MPLBACKEND": "Agg"}
    with tempfile.TemporaryDirectory() as tmp:  # run in a scratch folder: the source is never written
        run = execute_capped(nb, Path(tmp), CHAPTER_CAP_GB, env=env, timeout=1800, allow_errors=True)
    errors = [f"{o.get('ename')}: {o.get('evalue')}"[:200] for c in nb.cells for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    return {"notebook": source.name, "cap_gb": CHAPTER_CAP_GB if run["capped"] else None, "completed": run["completed"],
            "seconds": run["seconds"], "cgroup_peak_gb": run["cgroup_peak_gb"],
            "anonymous_peak_gb": run["anonymous_peak_gb"], "errors": errors}


def bench_chapters(quick: bool = False, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Every solution notebook (or the ``only`` chapter ids; the quickest one when ``quick``) under the cap."""
    sources = [p for p in notebooks(SOLUTIONS_DIR) if not quick or p.name.startswith(QUICK)]
    sources = [p for p in sources if not only or chapter_id(p.name) in only]
    why = cgroup_available(CHAPTER_CAP_GB)
    if why:
        return [{"notebook": p.name, "cap_gb": None, "completed": why} for p in sources]
    rows = []
    for source in sources:
        rows.append(run_chapter(source))
        print(f"  {rows[-1]}", flush=True)
    return rows
