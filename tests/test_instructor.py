"""A class run with nbgrader, headless: release, submit, autograde, gradebook, feedback, tampering.

Slow tier (autograding executes whole notebooks); still run by `make test`.
"""

from __future__ import annotations

import csv
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT, SOLUTIONS
from tests.wrong import chapter00 as wrong00
from utils.instructor import crosscheck, init_course, nbgrader_scores

pytestmark = pytest.mark.notebooks
NB00 = "00_transformerlens_warmup"
ASSIGNMENTS = sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


def nbgrader(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True)
    if check:
        assert run.returncode == 0, run.stdout + run.stderr
    return run


def fill(released: nbformat.NotebookNode, sources: dict[str, str]) -> nbformat.NotebookNode:
    """A learner's copy: the released notebook with some solution cells written."""
    nb = nbformat.from_dict(released)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in sources:
            cell.source = sources[grade_id]
    return nb


def reference_sources() -> dict[str, str]:
    nb = nbformat.read(SOLUTIONS / f"{NB00}.ipynb", as_version=4)
    return {
        c.metadata["nbgrader"]["grade_id"]: "\n".join(line for line in c.source.splitlines() if "### " not in line)
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }


def renamed(fixture) -> str:
    function = fixture.__name__.split("__")[0]
    return inspect.getsource(fixture).replace(f"def {fixture.__name__}(", f"def {function}(")


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    course = tmp_path_factory.mktemp("course")
    assert init_course(course) == ASSIGNMENTS
    assert all((course / "source" / a / f"{a}.ipynb").is_symlink() for a in ASSIGNMENTS)  # one source
    for assignment in ASSIGNMENTS:
        nbgrader(course, "generate_assignment", assignment, "--force")
    released = nbformat.read(course / "release" / NB00 / f"{NB00}.ipynb", as_version=4)
    right = reference_sources()
    partly_wrong = {**right, "previous_token_scores": renamed(wrong00.previous_token_scores__main_diagonal),
                    "ablated_loss": renamed(wrong00.ablated_loss__whole_layer)}
    tampered = fill(released, {})
    for cell in tampered.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") == "check_single_token_names":
            cell.source = "pass  # the learner emptied a locked check cell"
    redefine_check = "class Always:\n    def __getattr__(self, name):\n        return lambda *a, **k: None\n\n\ncheck = Always()"
    tampered.cells.insert(3, nbformat.v4.new_code_cell(redefine_check))
    patched = fill(released, {})
    patched.cells.insert(3, nbformat.v4.new_code_cell(
        "import utils.grading\n\n"
        "utils.grading.run_exercise = lambda ex, fn, hidden=True: "
        "utils.grading.Result(ex.function, ex.points, ex.points, True, 'ok')"
    ))
    deleted = fill(released, {**right, "single_token_names": "def single_token_names(model, names):\n    return names\n"})
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "check_single_token_names"]
    submissions = {
        "ada": fill(released, right),  # the reference solution
        "bea": released,  # the untouched release
        "cy": fill(released, partly_wrong),  # two exercises wrong
        "dov": tampered,  # edits a locked check cell, redefines `check`
        "eve": patched,  # monkey-patches the checks inside her kernel
        "fay": deleted,  # one wrong exercise whose check cell she deleted
    }
    for student, nb in submissions.items():
        nbgrader(course, "db", "student", "add", student)
        folder = course / "submitted" / student / NB00
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{NB00}.ipynb")
    nbgrader(course, "autograde", NB00)
    return course


def test_gradebook_has_full_zero_and_partial_marks(course):
    totals = {student: sum(grades.values()) for (assignment, student), grades in nbgrader_scores(course).items()}
    assert totals["ada"] == 10 and totals["bea"] == 0 and totals["cy"] == 8


def test_tampering_with_check_cells_gains_nothing(course):
    assert sum(nbgrader_scores(course)[(NB00, "dov")].values()) == 0  # locked cells restored, `check` re-imported
    autograded = (course / "autograded" / "dov" / NB00 / f"{NB00}.ipynb").read_text()
    assert "the learner emptied a locked check cell" not in autograded
    fay = nbgrader_scores(course)[(NB00, "fay")]  # a deleted check cell scores 0, it is not skipped
    assert fay["check_single_token_names"] == 0 and sum(fay.values()) == 9


def test_crosscheck_flags_checks_patched_inside_the_kernel(course):
    eve = nbgrader_scores(course)[(NB00, "eve")]
    problems = crosscheck(course)
    assert sum(eve.values()) == 10, "nbgrader runs the checks in the learner's kernel: a patch fools it"
    assert {p.split(" / ")[0] for p in problems} == {"eve"}  # utils.grade disagrees only with eve's grade
    assert len(problems) == 7 and all("utils.grade gives 0" in p for p in problems)


def test_export_and_feedback(course):
    nbgrader(course, "export")
    rows = {r["student_id"]: float(r["score"]) for r in csv.DictReader((course / "grades.csv").open()) if r["assignment"] == NB00}
    assert rows == {"ada": 10, "bea": 0, "cy": 8, "dov": 0, "eve": 10, "fay": 9}
    nbgrader(course, "generate_feedback", NB00)
    feedback = (course / "feedback" / "cy" / NB00 / f"{NB00}.html").read_text()
    assert "previous_token_scores" in feedback and "Score: 8.0 / 10.0" in feedback


def test_validate_source_and_released_notebooks(course):
    assert "Success" in nbgrader(course, "validate", f"source/{NB00}/{NB00}.ipynb").stdout
    for assignment in ASSIGNMENTS:
        released = f"release/{assignment}/{assignment}.ipynb"
        assert "VALIDATION FAILED" in nbgrader(course, "validate", released, check=False).stdout
        assert "Success" in nbgrader(course, "validate", "--invert", released).stdout  # every check fails on stubs


def test_nbgrader_extensions_are_enabled_in_the_pinned_jupyterlab():
    jupyter = [sys.executable, "-m", "jupyter"]
    lab = subprocess.run([*jupyter, "labextension", "list"], capture_output=True, text=True)
    server = subprocess.run([*jupyter, "server", "extension", "list"], capture_output=True, text=True)
    text = re.sub(r"\x1b\[[0-9;]*m", "", lab.stdout + lab.stderr + server.stdout + server.stderr)
    assert "JupyterLab v4." in text
    assert re.search(r"@jupyter/nbgrader v0\.9\.\d+ enabled OK", text)
    for extension in ["formgrader", "assignment_list", "course_list", "validate_assignment"]:
        assert f"nbgrader.server_extensions.{extension} enabled" in text
