"""Grade course notebooks: ``python -m utils.grade PATH [--json] [--timeout S]``.

PATH is a notebook or a folder of notebooks. The learner's file is only read, never written; how
a grade is made is in `utils.grading.driver`.

With ``--json`` it prints the grading contract:
``{"notebook", "exercises": [{"id", "points", "max_points", "passed", "message"}], "score",
"max_score"}``. A folder argument grades every notebook in it (a list in JSON, a table otherwise).
Exit status: 0 when graded (whatever the score), 2 when a file cannot be read as a course notebook.
"""

from __future__ import annotations

import os

# Grading runs two torch processes at once (this one and the learner's kernel). With OpenMP's
# default busy-waiting, two 2-thread processes on 2 cores ran 30x slower here; passive waiting
# costs ~20% alone and keeps both fast. It must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from utils.grading.driver import DEFAULT_TIME_LIMIT, grade_notebook  # noqa: E402
from utils.grading.notebook import NotebookUnreadable  # noqa: E402


def table(report: dict[str, Any]) -> str:
    """One notebook's report as a table: a line per exercise."""
    lines = [f"{report['notebook']}: {report['score']:g} / {report['max_score']:g}"]
    width = max((len(e["id"]) for e in report["exercises"]), default=0)
    for e in report["exercises"]:
        mark = "✓" if e["passed"] else "✗"
        lines.append(f"  {mark} {e['id']:<{width}}  {e['points']:g}/{e['max_points']:g}  {e['message']}")
    return "\n".join(lines)


def summary(reports: Sequence[dict[str, Any]]) -> str:
    """Several notebooks' scores, one line each, and the total."""
    rows = [(Path(r["notebook"]).name, r["score"], r["max_score"]) for r in reports]
    width = max((len(name) for name, _, _ in rows), default=8)
    lines = [f"{'notebook':<{width}}  score"]
    lines += [f"{name:<{width}}  {score:g} / {top:g}" for name, score, top in rows]
    lines.append(f"{'total':<{width}}  {sum(r[1] for r in rows):g} / {sum(r[2] for r in rows):g}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description="Grade course notebooks.")
    parser.add_argument("path", type=Path, help="a notebook, or a folder of notebooks")
    parser.add_argument("--json", action="store_true", help="print the grading contract's JSON")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIME_LIMIT, help="seconds per exercise (default 60)")
    args = parser.parse_args(argv)

    folder = args.path.is_dir()
    paths = sorted(args.path.glob("*.ipynb")) if folder else [args.path]
    reports, status = [], 0
    for path in paths:
        try:
            reports.append(grade_notebook(path, time_limit=args.timeout))
        except NotebookUnreadable as error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
    if args.json:
        if folder or reports:
            print(json.dumps(reports if folder else reports[0], indent=1))
    elif folder:
        print(summary(reports))
    else:
        for report in reports:
            print(table(report))
    return status


if __name__ == "__main__":
    sys.exit(main())
