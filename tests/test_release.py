"""One source per chapter: chapters/ is generated from solutions/ and must not drift or leak."""

from __future__ import annotations

import importlib

import nbformat
import pytest

from tests.conftest import CHAPTERS, SOLUTIONS
from utils.course import chapter_id, notebooks
from utils.grade import CHAPTERS as GRADED_CHAPTERS
from utils.release import stale, student_version

SOURCES = notebooks(SOLUTIONS)


def test_every_chapter_has_a_reference_and_a_learner_notebook():
    assert [p.name for p in SOURCES] == [p.name for p in sorted(CHAPTERS.glob("*.ipynb"))]
    assert {chapter_id(p.name) for p in SOURCES} == set(GRADED_CHAPTERS)


def test_chapters_are_generated_from_solutions():
    assert stale() == [], "chapters/ is out of date: run `make release`"


def test_drift_is_detected(tmp_path, monkeypatch):
    import shutil

    import utils.release as release

    shutil.copytree(SOLUTIONS, tmp_path / "solutions")
    shutil.copytree(CHAPTERS, tmp_path / "chapters")
    for name, value in [("ROOT", tmp_path), ("SOLUTIONS", tmp_path / "solutions"), ("CHAPTERS", tmp_path / "chapters")]:
        monkeypatch.setattr(release, name, value)
    assert release.stale() == []
    target = tmp_path / "chapters" / SOURCES[0].name
    nb = nbformat.read(target, as_version=4)
    nb.cells[0].source += "\nhand edit"
    nbformat.write(nb, target)
    assert release.stale() == [f"chapters/{target.name} differs from what solutions/{target.name} generates"]
    target.unlink()
    assert release.stale() == [f"chapters/{target.name} is missing"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_learner_notebook_has_stubs_and_no_solutions_or_outputs(source):
    text = (CHAPTERS / source.name).read_text()
    for marker in ["BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"]:
        assert marker not in text
    nb = nbformat.read(CHAPTERS / source.name, as_version=4)
    solution_cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert solution_cells and all("raise NotImplementedError()" in c.source for c in solution_cells)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_cells_have_roles_and_checks_match_the_registry(source):
    """Every authored code cell says what it is, so the grader knows what to run."""
    nb = nbformat.read(source, as_version=4)
    exercises = {e.function: e for e in importlib.import_module(GRADED_CHAPTERS[chapter_id(source.name)]).EXERCISES}
    solutions, checks = {}, {}
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        meta = cell.metadata.get("nbgrader", {})
        tags = set(cell.metadata.get("tags", []))
        if meta.get("solution"):
            solutions[meta["grade_id"]] = cell
            assert "### BEGIN SOLUTION" in cell.source
        elif meta.get("grade"):
            checks[meta["grade_id"]] = meta["points"]
            assert meta["locked"]
            # the check cell imports `check` itself: a learner's cell rebinding `check` changes nothing
            assert cell.source.startswith(f"from utils.chapter{chapter_id(source.name)} import check")
        else:
            assert tags & {"setup", "demo"}, f"code cell without a role: {cell.source[:80]!r}"
    assert set(solutions) == set(exercises)
    assert checks == {f"check_{name}": ex.points for name, ex in exercises.items()}
    for name in exercises:
        assert f"def {name}(" in solutions[name].source


def test_student_version_does_not_change_its_input():
    nb = nbformat.read(SOURCES[0], as_version=4)
    before = nbformat.writes(nb)
    student_version(nb)
    assert nbformat.writes(nb) == before
