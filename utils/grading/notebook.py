"""Reading a submission: is it a course notebook, which chapter, which cells does a grade run."""

from __future__ import annotations

import importlib
from pathlib import Path

import nbformat

from utils.course import EXERCISE_MODULES, chapter_id
from utils.errors import CourseError
from utils.grading.engine import Exercise


class NotebookUnreadable(CourseError):
    """The file is not a notebook this course can grade."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise NotebookUnreadable(f"{path}: cannot read the file ({error})") from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as error:  # nbformat raises several kinds for bad JSON or structure
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NotebookUnreadable(f"{path}: not a valid notebook ({first})") from None
    if not isinstance(nb.get("cells"), list):
        raise NotebookUnreadable(f"{path}: not a valid notebook (no list of cells)")
    return nb


def chapter_of(path: Path, nb: nbformat.NotebookNode) -> str:
    """The chapter id, from the file name (``00_topic.ipynb``) or the notebook's metadata."""
    chapter = chapter_id(Path(path).name) or str(nb.get("metadata", {}).get("course", {}).get("chapter", ""))
    if chapter not in EXERCISE_MODULES:
        raise NotebookUnreadable(
            f"{path}: can't tell which chapter this is (name it like chapters/00_topic.ipynb); "
            f"chapters: {', '.join(sorted(EXERCISE_MODULES))}"
        )
    return chapter


def exercises_of(chapter: str) -> list[Exercise]:
    return list(importlib.import_module(EXERCISE_MODULES[chapter]).EXERCISES)


def cells_to_run(nb: nbformat.NotebookNode) -> list[str]:
    """Sources of the cells a grade needs: setup cells, solution cells and learner-added cells.

    Authored cells carry their role: tag ``setup`` (run), tag ``demo`` (skipped), nbgrader
    ``solution`` (run) or nbgrader ``grade`` (the check itself: skipped, the grader checks).
    A code cell with none of these was added by the learner, and may define helpers: run it.
    """
    sources = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        tags = set(meta.get("tags", []))
        grader = meta.get("nbgrader", {})
        if "demo" in tags or (grader.get("grade") and not grader.get("solution")):
            continue
        source = cell.get("source", "")
        sources.append("".join(source) if isinstance(source, list) else str(source))
    return sources
