"""Grades in the files an instructor's tools take: a gradebook CSV, Canvas's gradebook import,
Gradescope's autograder results, and one feedback file per learner.

Who a report belongs to (`learner_of`): the first folder under the graded folder — nbgrader's
``submitted/<student>/<assignment>/<assignment>.ipynb`` gives ``<student>`` — or, for a notebook
directly in the graded folder, the file's name without ``.ipynb``. Feedback shows each exercise's
points and message; a message about a hidden case never names that case's inputs (`utils.grading.engine`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from utils.course import chapter_id, notebooks
from utils.paths import SOLUTIONS_DIR

Report = dict[str, Any]  # the grading contract's object


def learner_of(notebook: str | Path, folder: Path | None) -> str:
    path = Path(notebook)
    if folder is not None:
        try:
            parts = path.resolve().relative_to(folder.resolve()).parts
        except ValueError:
            parts = ()
        if len(parts) > 1:
            return parts[0]
    return path.stem


def assignment_of(report: Report) -> str:
    """The chapter a report grades, as its notebook's name (``00_transformerlens_warmup``)."""
    path = Path(report["notebook"])
    chapter = chapter_id(path.name)
    if chapter is None:
        try:
            chapter = str(json.loads(path.read_text(encoding="utf-8"))["metadata"]["course"]["chapter"])
        except (OSError, ValueError, KeyError, TypeError):
            return path.stem
    names = {chapter_id(p.name): p.stem for p in notebooks(SOLUTIONS_DIR)}
    return names.get(chapter, path.stem)


def by_learner(reports: Sequence[Report], folder: Path | None) -> dict[str, list[Report]]:
    learners: dict[str, list[Report]] = {}
    for report in reports:
        learners.setdefault(learner_of(report["notebook"], folder), []).append(report)
    return dict(sorted(learners.items()))


def column(report: Report, exercise: dict[str, Any]) -> str:
    """A gradebook column: ``00:attention_pattern`` (chapter id, then the exercise)."""
    assignment = assignment_of(report)
    return f"{chapter_id(assignment) or assignment}:{exercise['id']}"


def gradebook_csv(reports: Sequence[Report], path: Path, folder: Path | None = None) -> None:
    """One row per learner: a column per exercise (``chapter:function``), then the total and its maximum."""
    learners = by_learner(reports, folder)
    columns = sorted({column(r, e) for r in reports for e in r["exercises"]})
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["learner", *columns, "total", "max_total"])
        for learner, own in learners.items():
            points = {column(r, e): e["points"] for r in own for e in r["exercises"]}
            writer.writerow([learner, *(f"{points[c]:g}" if c in points else "" for c in columns),
                             f"{sum(r['score'] for r in own):g}", f"{sum(r['max_score'] for r in own):g}"])


def canvas_csv(reports: Sequence[Report], path: Path, folder: Path | None = None) -> None:
    """Canvas's gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, then one column per
    assignment (its total), with a "Points Possible" row. The learner id goes in SIS Login ID (and
    Student): use the login Canvas knows as the nbgrader student id, and Canvas matches the rows."""
    learners = by_learner(reports, folder)
    assignments = sorted({assignment_of(r) for r in reports})
    maxima = {a: next(r["max_score"] for r in reports if assignment_of(r) == a) for a in assignments}
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *assignments])
        writer.writerow(["Points Possible", "", "", "", "", *(f"{maxima[a]:g}" for a in assignments)])
        for learner, own in learners.items():
            scores = {assignment_of(r): r["score"] for r in own}
            writer.writerow([learner, "", "", learner, "", *(f"{scores[a]:g}" if a in scores else "" for a in assignments)])


def gradescope_results(report: Report) -> dict[str, Any]:
    """One submission's results in Gradescope's autograder format (``/autograder/results/results.json``)."""
    return {
        "score": report["score"],
        "tests": [
            {"name": e["id"], "score": e["points"], "max_score": e["max_points"], "output": e["message"], "visibility": "visible"}
            for e in report["exercises"]
        ],
        "visibility": "visible",
    }


def write_gradescope(reports: Sequence[Report], path: Path, folder: Path | None = None) -> list[Path]:
    """``path`` itself for one notebook; else ``path/<learner>/<assignment>/results.json`` for each."""
    if len(reports) == 1 and path.suffix == ".json":
        path.write_text(json.dumps(gradescope_results(reports[0]), indent=1))
        return [path]
    written = []
    for learner, own in by_learner(reports, folder).items():
        for report in own:
            target = path / learner / assignment_of(report) / "results.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(gradescope_results(report), indent=1))
            written.append(target)
    return written


def feedback(own: Sequence[Report]) -> str:
    """A learner's feedback as Markdown: a table per notebook."""
    lines = []
    for report in own:
        lines += [f"## {assignment_of(report)}: {report['score']:g} / {report['max_score']:g}", "",
                  "| exercise | points | |", "|---|---|---|"]
        for e in report["exercises"]:
            message = e["message"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {'✓' if e['passed'] else '✗'} `{e['id']}` | {e['points']:g} / {e['max_points']:g} | {message} |")
        lines.append("")
    return "\n".join(lines)


def write_feedback(reports: Sequence[Report], folder_out: Path, folder: Path | None = None) -> list[Path]:
    folder_out.mkdir(parents=True, exist_ok=True)
    written = []
    for learner, own in by_learner(reports, folder).items():
        target = folder_out / f"{learner}.md"
        target.write_text(f"# Feedback for {learner}\n\n" + feedback(own))
        written.append(target)
    return written
