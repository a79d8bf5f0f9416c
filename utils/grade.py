"""Grade course notebooks: ``python -m utils.grade PATH [--json] [--jobs N] [...]``.

PATH is a notebook or a folder (every ``*.ipynb`` under it, e.g. nbgrader's ``submitted/``). Each
learner's code runs in its own sandboxed kernel (`utils.grading.sandbox`): read-only course files,
no network, no view of other submissions, the graded chapter's references withheld, memory, CPU and
process caps. The learner's file is only read, never written; how a grade is made is in
`utils.grading.driver`, and a class graded in parallel in `utils.grading.batch`.

With ``--json`` it prints the grading contract:
``{"notebook", "exercises": [{"id", "points", "max_points", "passed", "message"}], "score",
"max_score"}`` — a list of them for a folder (in path order). ``--csv``, ``--canvas``,
``--gradescope`` and ``--feedback`` also write the grades for an LMS (`utils.grading.export`).
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

from utils.grading import export  # noqa: E402
from utils.grading.batch import Options, grade_many  # noqa: E402
from utils.grading.driver import DEFAULT_TIME_LIMIT, grade_notebook  # noqa: E402
from utils.grading.engine import failed  # noqa: E402
from utils.grading.notebook import NotebookUnreadable, chapter_of, exercises_of, read_notebook  # noqa: E402
from utils.grading.sandbox import Limits  # noqa: E402


def table(report: dict[str, Any]) -> str:
    """One notebook's report as a table: a line per exercise."""
    lines = [f"{report['notebook']}: {report['score']:g} / {report['max_score']:g}"]
    width = max((len(e["id"]) for e in report["exercises"]), default=0)
    for e in report["exercises"]:
        mark = "✓" if e["passed"] else "✗"
        lines.append(f"  {mark} {e['id']:<{width}}  {e['points']:g}/{e['max_points']:g}  {e['message']}")
    return "\n".join(lines)


def summary(reports: Sequence[dict[str, Any]], folder: Path) -> str:
    """Several notebooks' scores, one line each, and the total."""
    rows = [(_shown(r["notebook"], folder), r["score"], r["max_score"]) for r in reports]
    width = max((len(name) for name, _, _ in rows), default=8)
    lines = [f"{'notebook':<{width}}  score"]
    lines += [f"{name:<{width}}  {score:g} / {top:g}" for name, score, top in rows]
    lines.append(f"{'total':<{width}}  {sum(r[1] for r in rows):g} / {sum(r[2] for r in rows):g}")
    return "\n".join(lines)


def _shown(notebook: str, folder: Path) -> str:
    try:
        return str(Path(notebook).resolve().relative_to(folder.resolve()))
    except ValueError:
        return notebook


def notebooks_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("."))


def failure_report(path: Path, message: str) -> dict[str, Any]:
    """The contract's object for a notebook whose grading itself failed: every exercise 0, saying why."""
    exercises = exercises_of(chapter_of(path, read_notebook(path)))
    results = [failed(e, message).as_dict() for e in exercises]
    return {"notebook": str(path), "exercises": results, "score": 0.0, "max_score": float(sum(e.points for e in exercises))}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description="Grade course notebooks.")
    parser.add_argument("path", type=Path, help="a notebook, or a folder of notebooks (searched recursively)")
    parser.add_argument("--json", action="store_true", help="print the grading contract's JSON")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIME_LIMIT, help="seconds per exercise and cell (default 60)")
    parser.add_argument("--memory", type=float, default=Limits.memory_gb, help="GB of memory per kernel (default 4)")
    parser.add_argument("--cpu-time", type=int, default=Limits.cpu_seconds, help="CPU seconds per kernel (default 3600)")
    parser.add_argument("--no-isolation", action="store_true", help="keep the limits but run kernels unsandboxed (debugging)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (a folder; default 1)")
    parser.add_argument("--dask", nargs="?", const="", metavar="SCHEDULER",
                        help="grade on Dask: a LocalCluster of --jobs workers, or the scheduler at this address")
    parser.add_argument("--results", type=Path, help="JSON Lines file of finished grades: a rerun skips what it holds")
    parser.add_argument("--csv", type=Path, help="write a gradebook: one row per learner, a column per exercise")
    parser.add_argument("--canvas", type=Path, help="write Canvas's gradebook-import CSV")
    parser.add_argument("--gradescope", type=Path, help="write Gradescope autograder results (a file, or a folder per learner)")
    parser.add_argument("--feedback", type=Path, help="write one Markdown feedback file per learner into this folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    options = Options(args.timeout, Limits(memory_gb=args.memory, cpu_seconds=args.cpu_time), isolate=not args.no_isolation)
    folder = args.path.is_dir()
    reports, status = [], 0
    if not folder:
        try:
            reports.append(grade_notebook(args.path, options.time_limit, options.limits, options.isolate))
        except NotebookUnreadable as error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
    else:
        backend = "dask" if args.dask is not None else "local"
        for result in grade_many(notebooks_under(args.path), options, args.jobs, args.results, backend, args.dask or None):
            if "report" in result:
                reports.append(result["report"])
            elif "failed" in result:
                reports.append(failure_report(Path(result["path"]), result["failed"]))
            else:
                print(f"error: {result['unreadable']}", file=sys.stderr)
                status = 2
    write_exports(args, reports)
    if args.json:
        if folder or reports:
            print(json.dumps(reports if folder else reports[0], indent=1))
    elif folder:
        print(summary(reports, args.path))
    else:
        for report in reports:
            print(table(report))
    return status


def write_exports(args: argparse.Namespace, reports: list[dict[str, Any]]) -> None:
    folder = args.path if args.path.is_dir() else None
    if args.csv:
        export.gradebook_csv(reports, args.csv, folder)
    if args.canvas:
        export.canvas_csv(reports, args.canvas, folder)
    if args.gradescope:
        export.write_gradescope(reports, args.gradescope, folder)
    if args.feedback:
        export.write_feedback(reports, args.feedback, folder)


if __name__ == "__main__":
    sys.exit(main())
