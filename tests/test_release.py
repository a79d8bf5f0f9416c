"""One source per chapter: chapters/ is generated from solutions/ and must not drift or leak."""

from __future__ import annotations

import importlib
import inspect

import nbformat
import pytest

from tests.conftest import CHAPTERS, SOLUTIONS
from utils import release
from utils.course import EXERCISE_MODULES as GRADED_CHAPTERS
from utils.course import REFERENCE_MODULES, chapter_id, notebooks
from utils.release import stale, student_version

SOURCES = notebooks(SOLUTIONS)


def test_every_chapter_has_a_reference_and_a_learner_notebook():
    assert [p.name for p in SOURCES] == [p.name for p in sorted(CHAPTERS.glob("*.ipynb"))]
    assert {chapter_id(p.name) for p in SOURCES} == set(GRADED_CHAPTERS)


def test_chapters_are_generated_from_solutions():
    assert stale() == [], "chapters/ is out of date: run `make release`"


def test_drift_is_detected(tmp_path, monkeypatch):
    import shutil

    from utils import paths

    shutil.copytree(SOLUTIONS, tmp_path / "solutions")
    shutil.copytree(CHAPTERS, tmp_path / "chapters")
    for name, value in [("ROOT", tmp_path), ("SOLUTIONS_DIR", tmp_path / "solutions"), ("CHAPTERS_DIR", tmp_path / "chapters")]:
        monkeypatch.setattr(paths, name, value)
    assert release.stale() == []
    target = tmp_path / "chapters" / SOURCES[0].name
    nb = nbformat.read(target, as_version=4)
    nb.cells[0].source += "\nhand edit"
    nbformat.write(nb, target)
    assert release.stale() == [f"chapters/{target.name} differs from what solutions/{target.name} generates"]
    target.unlink()
    assert release.stale() == [f"chapters/{target.name} is missing"]


def test_a_solution_cell_that_differs_from_its_reference_is_drift(tmp_path, monkeypatch):
    """One text per reference: the solution cells are written from utils/references/, so a hand edit of a
    solution cell (or a reference edited without `make release`) fails the check."""
    import shutil

    from utils import paths

    shutil.copytree(SOLUTIONS, tmp_path / "solutions")
    shutil.copytree(CHAPTERS, tmp_path / "chapters")
    monkeypatch.setattr(paths, "SOLUTIONS_DIR", tmp_path / "solutions")
    monkeypatch.setattr(paths, "CHAPTERS_DIR", tmp_path / "chapters")
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    source = tmp_path / "solutions" / SOURCES[0].name
    nb = nbformat.read(source, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    cell.source = cell.source.replace("### END SOLUTION", "pass  # a hand edit\n    ### END SOLUTION")
    nbformat.write(nb, source)
    module = REFERENCE_MODULES[chapter_id(source.name)]
    assert f"solutions/{source.name}: its solution cells differ from {module}" in release.stale()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_solution_cell_is_its_reference_function(source):
    """The solution cell's code is the reference's source, markers aside: exec'd, it defines the same function."""
    chapter = chapter_id(source.name)
    module = importlib.import_module(REFERENCE_MODULES[chapter])
    for cell in nbformat.read(source, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            reference = getattr(module, meta["grade_id"])
            body = "\n".join(line for line in cell.source.splitlines() if line.strip() not in (release.BEGIN, release.END))
            assert body == inspect.getsource(reference).rstrip("\n")


def test_a_reference_without_a_docstring_is_refused():
    def undocumented(x):
        return x

    with pytest.raises(release.ReferenceProblem, match="needs a docstring"):
        release.solution_source(undocumented)


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
