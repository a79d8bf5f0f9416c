"""A class run with nbgrader, headless: release, submit, autograde, gradebook, feedback, tampering.

Slow tier (autograding executes whole notebooks); still run by `make test`. The class works on
chapter 04d (gradient routing): the quickest notebook to execute (no language model), run seven times.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT, SOLUTIONS, prepare_caches
from utils.course import notebooks
from utils.grading.sandbox import isolation
from utils.instructor import crosscheck, init_course, nbgrader_scores
from utils.mistakes import chapter04d as wrong04d
from utils.runs import RunCache

pytestmark = pytest.mark.notebooks
NB = "04d_gradient_routing"
PROBE = "written-by-a-submission.txt"
ASSIGNMENTS = [p.stem for p in notebooks(SOLUTIONS)]


def nbgrader(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True)
    if check:
        assert run.returncode == 0, run.stdout + run.stderr
    return run


def generate_assignments(course: Path, assignments: list[str]) -> None:
    """`nbgrader generate_assignment` of each, through nbgrader's own API in one process (what formgrader calls;
    the same files as the command, 2.5 s of start-up less per assignment)."""
    script = (
        "import sys\nfrom nbgrader.apps import NbGraderAPI\nfrom nbgrader.apps.nbgraderapp import NbGraderApp\n"
        "app = NbGraderApp()\napp.load_config_file()\napi = NbGraderAPI(parent=app)\n"
        "for assignment in sys.argv[1:]:\n"
        "    done = api.generate_assignment(assignment, force=True, create=True)\n"
        "    assert done['success'], (assignment, done.get('error'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script, *assignments], cwd=course, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


VALIDATIONS = RunCache("nbgrader-validate")


def validate_inverted(course: Path, assignment: str) -> str:
    """`nbgrader validate --invert` of a released assignment (it executes the whole learner notebook, a minute for
    some): its output, or the output of the last run that succeeded on the same released notebook with the same
    `utils/` and environment (`utils/runs.py`; ``COURSE_FRESH_RUNS=1`` validates again)."""
    released = course / "release" / assignment / f"{assignment}.ipynb"
    import nbgrader as nbgrader_package

    inputs = sorted((ROOT / "utils").rglob("*.py")) + [ROOT / "requirements.txt"]
    extra = f"{hashlib.sha256(released.read_bytes()).hexdigest()} nbgrader {nbgrader_package.__version__} {sys.version}"
    stored = VALIDATIONS.lookup(assignment, inputs, extra)
    if stored is not None:
        return stored.notebook.read_text()
    prepare_caches(SOLUTIONS / f"{assignment}.ipynb")  # a cold cache's transcoders: trained before, not in a cell
    output = nbgrader(course, "validate", "--invert", f"release/{assignment}/{assignment}.ipynb").stdout
    if "Success" in output:
        VALIDATIONS.store(assignment, inputs, [], extra, {"summary": "validate --invert: Success"}, output)
    return output


def fill(released: nbformat.NotebookNode, sources: dict[str, str]) -> nbformat.NotebookNode:
    """A learner's copy: the released notebook with some solution cells written."""
    nb = nbformat.from_dict(released)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in sources:
            cell.source = sources[grade_id]
    return nb


def reference_sources() -> dict[str, str]:
    nb = nbformat.read(SOLUTIONS / f"{NB}.ipynb", as_version=4)
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
    nbgrader(course, "generate_assignment", NB, "--force")  # the class's assignment, as the README says
    generate_assignments(course, [a for a in ASSIGNMENTS if a != NB])  # the others: for the validate test
    released = nbformat.read(course / "release" / NB / f"{NB}.ipynb", as_version=4)
    right = reference_sources()
    partly_wrong = {**right, "group_losses": renamed(wrong04d.group_losses__divided_by_batch),
                    "keep_half": renamed(wrong04d.keep_half__slices)}
    tampered = fill(released, {})
    for cell in tampered.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") == "check_routing_mask":
            cell.source = "pass  # the learner emptied a locked check cell"
    redefine_check = "class Always:\n    def __getattr__(self, name):\n        return lambda *a, **k: None\n\n\ncheck = Always()"
    tampered.cells.insert(3, nbformat.v4.new_code_cell(redefine_check))
    patched = fill(released, {})
    patched.cells.insert(3, nbformat.v4.new_code_cell(
        "import utils.grading.checks\n"
        "import utils.grading.engine\n\n"
        "utils.grading.checks.run_cases = lambda ex, fn, cases: "
        "utils.grading.engine.Result(ex.function, ex.points, ex.points, True, 'ok')"
    ))
    delegating = fill(released, {
        **right,
        "keep_half": "from utils.references.chapter04d import keep_half as answer\n\n\n"
                     "def keep_half(z, half):\n    return answer(z, half)\n",
        "routing_mask": right["routing_mask"].replace("def routing_mask(", "def right_mask(") + "\n\n"
                        f"PROBE = {PROBE!r}\n\nimport pathlib\n\nimport utils\n\n\ndef routing_mask(labels, latent_dim):\n"
                        "    try:\n        (pathlib.Path(utils.__path__[0]) / PROBE).write_text('a submission was here')\n"
                        "    except OSError:\n"
                        "        return right_mask(labels, latent_dim)  # right only where the course is read-only\n",
    })
    deleted = fill(released, {**right, "keep_half": "def keep_half(z, half):\n    return z\n"})
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "check_keep_half"]
    submissions = {
        "ada": fill(released, right),  # the reference solution
        "bea": released,  # the untouched release
        "cy": fill(released, partly_wrong),  # two exercises wrong
        "dov": tampered,  # edits a locked check cell, redefines `check`
        "eve": patched,  # monkey-patches the checks inside her kernel
        "fay": deleted,  # one wrong exercise whose check cell she deleted
        "gus": delegating,  # calls the reference for one exercise; tries to write a course file for another
    }
    (course / "students.csv").write_text("id\n" + "".join(f"{student}\n" for student in submissions))
    nbgrader(course, "db", "student", "import", "students.csv")
    for student, nb in submissions.items():
        folder = course / "submitted" / student / NB
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{NB}.ipynb")
    nbgrader(course, "autograde", NB)
    return course


def test_gradebook_has_full_zero_and_partial_marks(course):
    totals = {student: sum(grades.values()) for (assignment, student), grades in nbgrader_scores(course).items()}
    assert totals["ada"] == 8 and totals["bea"] == 0 and totals["cy"] == 5


def test_tampering_with_check_cells_gains_nothing(course):
    assert sum(nbgrader_scores(course)[(NB, "dov")].values()) == 0  # locked cells restored, `check` re-imported
    autograded = (course / "autograded" / "dov" / NB / f"{NB}.ipynb").read_text()
    assert "the learner emptied a locked check cell" not in autograded
    fay = nbgrader_scores(course)[(NB, "fay")]  # a deleted check cell scores 0, it is not skipped
    assert fay["check_keep_half"] == 0 and sum(fay.values()) == 7


def test_crosscheck_flags_checks_patched_inside_the_kernel_and_delegation_to_the_references(course):
    eve, gus = nbgrader_scores(course)[(NB, "eve")], nbgrader_scores(course)[(NB, "gus")]
    problems = crosscheck(course, jobs=2)
    assert sum(eve.values()) == 8, "nbgrader runs the checks in the learner's kernel: a patch fools it"
    assert sum(gus.values()) == 8, "nbgrader's kernel must reach the references (its check cells use them)"
    assert {p.split(" / ")[0] for p in problems} == {"eve", "gus"}  # utils.grade disagrees only with these two
    assert len([p for p in problems if p.startswith("eve")]) == 5 and all("utils.grade gives 0" in p for p in problems)
    (delegation,) = [p for p in problems if p.startswith("gus")]
    assert "gus / 04d_gradient_routing / keep_half" in delegation and "reference implementation" in delegation


@pytest.mark.skipif(not isolation()[0], reason=f"needs bubblewrap: {isolation()[1]}")
def test_nbgrader_autogrades_in_the_sandbox(course):
    """gus's routing_mask is right only if writing into the course's package failed: nbgrader gave it its point."""
    written = ROOT / "utils" / PROBE
    try:
        assert not written.exists()
        assert nbgrader_scores(course)[(NB, "gus")]["check_routing_mask"] == 2  # full marks
    finally:
        written.unlink(missing_ok=True)


def test_export_and_feedback(course):
    nbgrader(course, "export")
    rows = {r["student_id"]: float(r["score"]) for r in csv.DictReader((course / "grades.csv").open()) if r["assignment"] == NB}
    assert rows == {"ada": 8, "bea": 0, "cy": 5, "dov": 0, "eve": 8, "fay": 7, "gus": 8}
    nbgrader(course, "generate_feedback", NB)
    feedback = (course / "feedback" / "cy" / NB / f"{NB}.html").read_text()
    assert "group_losses" in feedback and "Score: 5.0 / 8.0" in feedback


def test_validate_source_and_released_notebooks(course):
    assert "Success" in nbgrader(course, "validate", f"source/{NB}/{NB}.ipynb").stdout
    released = f"release/{NB}/{NB}.ipynb"
    assert "VALIDATION FAILED" in nbgrader(course, "validate", released, check=False).stdout
    for assignment in ASSIGNMENTS:  # --invert succeeds only if every check fails on the stubs
        assert "Success" in validate_inverted(course, assignment)


def test_nbgrader_extensions_are_enabled_in_the_pinned_jupyterlab():
    jupyter = [sys.executable, "-m", "jupyter"]
    lab = subprocess.run([*jupyter, "labextension", "list"], capture_output=True, text=True)
    server = subprocess.run([*jupyter, "server", "extension", "list"], capture_output=True, text=True)
    text = re.sub(r"\x1b\[[0-9;]*m", "", lab.stdout + lab.stderr + server.stdout + server.stderr)
    assert "JupyterLab v4." in text
    assert re.search(r"@jupyter/nbgrader v0\.9\.\d+ enabled OK", text)
    for extension in ["formgrader", "assignment_list", "course_list", "validate_assignment"]:
        assert f"nbgrader.server_extensions.{extension} enabled" in text
