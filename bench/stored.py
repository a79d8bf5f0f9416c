"""The benchmark's slowest sections, kept under the code they measure (`utils/runs.py`), so that a `make bench`
that changed none of that code re-reads them instead of measuring them again.

The chapters end to end (each notebook under its memory cap), the transcoders trained from nothing and the
SAE trainer's scaling runs take about three quarters of a whole run and change only when the code does: a
notebook, a file of `utils/`, the requirements, the section's own `bench/` module — or the machine, the
Python, the torch build and the OpenMP wait policy, which are part of the key too. Their stored figures are
printed as measured, with the date they were measured and how long that took. A run with ``--only`` measures
the sections it names (and stores them); ``--fresh`` (``make bench FRESH=1``) or ``COURSE_FRESH_RUNS=1``
measures every section.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from utils.paths import ROOT, SOLUTIONS_DIR
from utils.runs import RunCache

RUNS = RunCache("bench")
MEASURES = {  # section -> the bench modules that measure it (beside bench/measure.py)
    "chapters": ["chapters.py"],
    "transcoders": ["transcoders.py"],
    "scaling": ["sae.py", "sae_runner.py"],
}
STORED = tuple(MEASURES)


def inputs(section: str) -> list[Path]:
    """What ``section``'s figures are made from: the course's code and notebooks, the requirements, its bench modules."""
    bench = [ROOT / "bench" / name for name in [*MEASURES[section], "measure.py"]]
    return sorted((ROOT / "utils").rglob("*.py")) + sorted(SOLUTIONS_DIR.glob("*.ipynb")) + [ROOT / "requirements.txt", *bench]


def _extra(section: str, machine: str) -> str:
    return f"{section} {machine} {sys.version} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"


def lookup(section: str, machine: str) -> dict[str, Any] | None:
    """``{"result", "seconds", "date"}`` of ``section``'s last whole measurement from the same code on the same machine."""
    stored = RUNS.lookup(section, inputs(section), _extra(section, machine))
    if stored is None:
        return None
    return {"result": json.loads(stored.notebook.read_text()), **stored.record}


def store(section: str, machine: str, result: Any, seconds: float, date: str) -> None:
    RUNS.store(section, inputs(section), [], _extra(section, machine), {"seconds": round(seconds), "date": date},
               json.dumps(result))
