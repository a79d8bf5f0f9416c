"""Make the notebooks from their one source: ``python -m utils.release [--check]``.

Two generated layers, both checked for drift by ``--check`` (and by a test):

1. each solution cell of ``solutions/NN_topic.ipynb`` is the reference implementation written in
   ``utils/references/chapterNN.py``: the function's signature and docstring, its body between
   nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers. Edit the function there, never the
   cell. Each exercise's statement (the markdown cell above it) gets its pace line under its heading
   and its hints, folded, at its end, from the exercise table (``utils/chapterNN.py``), between
   ``<!-- pace -->`` and ``<!-- hints -->`` marks. The prose and every other cell of the notebook are
   edited in the notebook itself;
   After each demo cell that draws, the release puts its expected figure (`utils.figures`, made by
   ``make figures`` from an executed reference run) in a cell tagged ``expected``;
2. ``chapters/NN_topic.ipynb`` (the learner's copy) is made from the solution notebook by nbgrader's
   own preprocessors, as ``nbgrader generate_assignment`` does: solution bodies become a stub that
   raises NotImplementedError, hidden tests are removed, outputs cleared, check cells locked and
   checksummed.

Every notebook's first code cell (the Colab set-up, collapsed) and the README's Colab and Binder
badges are written from ``utils/colab.py``, where the repository's address lives.

``python -m utils.release``          rewrite both layers
``python -m utils.release --check``  exit 1 (and say which file and why) if either is out of date
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)

from utils import colab, figures, paths
from utils.course import EXERCISE_MODULES, REFERENCE_MODULES, chapter_id, notebooks
from utils.grading.engine import Exercise

STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


class ReferenceProblem(ValueError):
    """A reference function that can't be written into a solution cell."""


def solution_source(function: Callable) -> str:
    """A solution cell's text: the reference's signature and docstring, then its body between markers."""
    source = textwrap.dedent(inspect.getsource(function))
    definition = ast.parse(source).body[0]
    name = getattr(function, "__qualname__", function)
    if not isinstance(definition, ast.FunctionDef) or definition.decorator_list:
        raise ReferenceProblem(f"{name}: a reference is a plain function (no decorators)")
    first = definition.body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)):
        raise ReferenceProblem(f"{name}: a reference needs a docstring (it is the learner's statement of the exercise)")
    if len(definition.body) < 2:
        raise ReferenceProblem(f"{name}: a reference needs a body after its docstring")
    lines = source.rstrip("\n").splitlines()
    header, body = lines[: first.end_lineno], lines[first.end_lineno :]
    indent = " " * definition.body[1].col_offset
    return "\n".join([*header, indent + BEGIN, *body, indent + END])


PACE = ("<!-- pace: written by `make release` from the exercise table -->", "<!-- /pace -->")
HINTS = ("<!-- hints: written by `make release` from the exercise table -->", "<!-- /hints -->")


def _strip(text: str, marks: tuple[str, str]) -> str:
    """``text`` without the block between ``marks`` (and the blank line before it)."""
    start, end = marks
    while start in text and end in text:
        before, rest = text.split(start, 1)
        text = before.rstrip("\n") + rest.split(end, 1)[1]
    return text


def dots(n: int, on: str) -> str:
    return on * n + "⚪" * (5 - n)


def pace_line(exercise: Exercise) -> str:
    return (f"Difficulty {dots(exercise.difficulty, '🔴')} · Importance {dots(exercise.importance, '🔵')} · "
            f"about {exercise.minutes} minutes · {exercise.points:g} point{'s' * (exercise.points != 1)}")


def hints_block(exercise: Exercise) -> str:
    folds = [f"<details><summary>Hint {k} of {len(exercise.hints)}</summary>\n\n{hint}\n\n</details>"
             for k, hint in enumerate(exercise.hints, start=1)]
    return "\n".join(folds)


def with_pace(source: str, exercise: Exercise) -> str:
    """A statement cell with its pace line under the heading and its hint ladder, folded, at the end."""
    text = _strip(_strip(source, PACE), HINTS).rstrip("\n")
    if exercise.difficulty:
        lines = text.split("\n")
        heading = max((i for i, line in enumerate(lines) if line.startswith("#")), default=-1)
        pace = [PACE[0], pace_line(exercise), PACE[1]]
        lines[heading + 1 : heading + 1] = ["", *pace] if heading >= 0 else [*pace, ""]
        text = "\n".join(lines)
    if exercise.hints:
        text += f"\n\n{HINTS[0]}\n{hints_block(exercise)}\n{HINTS[1]}"
    return text


def with_references(nb: nbformat.NotebookNode, chapter: str) -> nbformat.NotebookNode:
    """The reference notebook with every solution cell written from the chapter's reference module."""
    module = importlib.import_module(REFERENCE_MODULES[chapter])
    exercises = {e.function: e for e in importlib.import_module(EXERCISE_MODULES[chapter]).EXERCISES}
    nb = nbformat.from_dict(nbformat.from_dict(nb))  # deep copy
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            function = getattr(module, meta["grade_id"], None)
            if function is None:
                raise ReferenceProblem(f"{module.__name__} has no function {meta['grade_id']!r} for the notebook's solution cell")
            cell.source = solution_source(function)
            statement = max(i for i in range(index) if nb.cells[i].cell_type == "markdown")
            nb.cells[statement].source = with_pace(nb.cells[statement].source, exercises[meta["grade_id"]])
    return nb


def with_colab_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook with its first code cell the Colab set-up (tagged ``colab`` and ``demo``: the
    grader skips it), its source collapsed in JupyterLab and shown as a form in Colab."""
    nb = nbformat.from_dict(nbformat.from_dict(nb))  # deep copy
    cell = next((c for c in nb.cells if c.cell_type == "code" and colab.TAG in c.metadata.get("tags", [])), None)
    if cell is None:  # a new notebook: the cell goes after its title
        cell = nbformat.v4.new_code_cell()
        nb.cells.insert(1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0, cell)
    cell.source = colab.colab_cell()
    cell.metadata["tags"] = ["demo", colab.TAG]
    cell.metadata["jupyter"] = {"source_hidden": True}
    cell.metadata["cellView"] = "form"
    return nb


def readme_with_badges(text: str) -> str:
    """The README with each chapter row's Colab and Binder badges written from ``utils/colab.py``."""
    rows = []
    for line in text.split("\n"):
        found = re.match(r"\| *(\w+) *\| *\[[^]]*\]\(chapters/([^)]+\.ipynb)\)", line)
        if found and line.count("|") >= 6:
            cells = line.split("|")
            cells[-3:-1] = [f" {badge} " for badge in colab.badges(found.group(2))]
            line = "|".join(cells)
        rows.append(line)
    return "\n".join(rows)


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The learner's copy of a reference notebook (a new object; the argument is not changed)."""
    nb = nbformat.from_dict(nbformat.from_dict(nb))  # deep copy
    resources: dict = {}
    for preprocessor in [
        CheckCellMetadata(),
        ClearSolutions(code_stub={"python": STUB}, enforce_metadata=True),
        ClearHiddenTests(enforce_metadata=True),
        ClearMarkScheme(enforce_metadata=True),
        ClearOutput(),
        LockCells(lock_grade_cells=True, lock_readonly_cells=True),
        ComputeChecksums(),
    ]:
        nb, resources = preprocessor.preprocess(nb, resources)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def generated(source: Path) -> tuple[str, str]:
    """(the solution notebook's text, the learner notebook's text), as the release writes them."""
    solution = with_colab_cell(with_references(nbformat.read(source, as_version=4), chapter_id(source.name)))
    solution = figures.with_expected(solution, source)
    return render(solution), render(student_version(solution))


def sources(chapter: str | None = None) -> list[Path]:
    """The reference notebooks (of one chapter, if given)."""
    return [p for p in notebooks(paths.SOLUTIONS_DIR) if chapter is None or chapter_id(p.name) == chapter]


def stale(chapter: str | None = None) -> list[str]:
    """What is out of date: solution cells that differ from the references, learner notebooks that
    are missing or differ from what their solution notebook generates, learner notebooks without one."""
    problems = []
    for source in sources(chapter):
        solution, learner = generated(source)
        target = paths.CHAPTERS_DIR / source.name
        if source.read_text(encoding="utf-8") != solution:
            module = REFERENCE_MODULES[chapter_id(source.name)]
            problems.append(f"{source.relative_to(paths.ROOT)}: its solution cells differ from {module}")
        problems += [f"{problem}: run `make figures`" for problem in figures.stale(source)]
        if not target.exists():
            problems.append(f"{target.relative_to(paths.ROOT)} is missing")
        elif target.read_text(encoding="utf-8") != learner:
            problems.append(f"{target.relative_to(paths.ROOT)} differs from what {source.relative_to(paths.ROOT)} generates")
    readme = paths.ROOT / "README.md"
    text = readme.read_text(encoding="utf-8") if chapter is None and readme.exists() else None
    if text is not None and text != readme_with_badges(text):
        problems.append("README.md: its Colab/Binder badges differ from the address in utils/colab.py")
    names = {source.name for source in notebooks(paths.SOLUTIONS_DIR)}
    orphans = [p for p in sorted(paths.CHAPTERS_DIR.glob("*.ipynb")) if p.name not in names and chapter is None]
    problems += [f"{p.relative_to(paths.ROOT)} has no reference notebook" for p in orphans]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description="Write solution cells from the references, and chapters/ from solutions/.")
    parser.add_argument("--check", action="store_true", help="only check that both are up to date")
    parser.add_argument("--chapter", help="only this chapter (e.g. 04d)")
    args = parser.parse_args()
    if args.check:
        problems = stale(args.chapter)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("Run `make release` to regenerate them (edit references in utils/references/).", file=sys.stderr)
        return 1 if problems else 0
    paths.CHAPTERS_DIR.mkdir(exist_ok=True)
    for source in sources(args.chapter):
        solution, learner = generated(source)
        if source.read_text(encoding="utf-8") != solution:
            source.write_text(solution, encoding="utf-8")
            print(f"{REFERENCE_MODULES[chapter_id(source.name)]} -> {source.relative_to(paths.ROOT)}")
        target = paths.CHAPTERS_DIR / source.name
        target.write_text(learner, encoding="utf-8")
        print(f"{source.relative_to(paths.ROOT)} -> {target.relative_to(paths.ROOT)}")
    readme = paths.ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if args.chapter is None and readme_with_badges(text) != text:
        readme.write_text(readme_with_badges(text), encoding="utf-8")
        print("utils/colab.py -> README.md (badges)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
