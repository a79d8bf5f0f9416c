"""`python -m utils.grade`: the grading contract, full and zero marks, wrong code, hostile notebooks."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import textwrap

import nbformat
import pytest

from tests.conftest import CHAPTERS, ROOT, SOLUTIONS
from utils.chapter00 import EXERCISES
from utils.grade import grade_notebook
from utils.mistakes import chapter00 as wrong00

NB00 = "00_transformerlens_warmup.ipynb"
POINTS = {e.function: float(e.points) for e in EXERCISES}


def grade_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "utils.grade", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)


def variant(tmp_path, name: str, replace: dict[str, str], added: list[str] = ()) -> str:
    """A copy of the reference notebook with some solution cells replaced and learner cells added."""
    nb = nbformat.read(SOLUTIONS / NB00, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in replace:
            cell.source = textwrap.dedent(replace[grade_id])
    setup = next(i for i, c in enumerate(nb.cells) if "setup" in c.metadata.get("tags", []))
    for offset, source in enumerate(added, start=1):
        nb.cells.insert(setup + offset, nbformat.v4.new_code_cell(textwrap.dedent(source)))
    path = tmp_path / f"00_{name}.ipynb"
    nbformat.write(nb, path)
    return str(path)


def renamed(fixture) -> str:
    function = fixture.__name__.split("__")[0]
    return inspect.getsource(fixture).replace(f"def {fixture.__name__}(", f"def {function}(")


def marks(report: dict) -> dict[str, float]:
    return {e["id"]: e["points"] for e in report["exercises"]}


def test_solution_gets_full_marks_and_the_contract_shape():
    run = grade_cli(SOLUTIONS / NB00, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert set(report) == {"notebook", "exercises", "score", "max_score"}
    assert report["notebook"].endswith(NB00)
    for exercise in report["exercises"]:
        assert set(exercise) == {"id", "points", "max_points", "passed", "message"}
        assert isinstance(exercise["points"], float) and isinstance(exercise["passed"], bool)
    assert marks(report) == POINTS
    assert report["score"] == report["max_score"] == sum(POINTS.values())


def test_fresh_student_notebook_gets_zero_and_is_not_modified():
    path = CHAPTERS / NB00
    before, mtime = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    report = grade_notebook(path)
    assert report["score"] == 0 and report["max_score"] == sum(POINTS.values())
    assert all("not implemented yet" in e["message"] for e in report["exercises"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before and path.stat().st_mtime_ns == mtime


def test_wrong_implementations_lose_exactly_their_points_and_grading_is_deterministic(tmp_path):
    wrong = [
        wrong00.previous_token_scores__main_diagonal,
        wrong00.induction_scores__whole_diagonal,
        wrong00.ablated_loss__whole_layer,
    ]
    path = variant(tmp_path, "wrong", {fixture.__name__.split("__")[0]: renamed(fixture) for fixture in wrong})
    first, second = grade_notebook(path), grade_notebook(path)
    lost = {"previous_token_scores", "induction_scores", "ablated_loss"}
    assert marks(first) == {name: 0.0 if name in lost else points for name, points in POINTS.items()}
    assert first == second
    messages = {e["id"]: e["message"] for e in first["exercises"]}
    for fixture in wrong:  # the grade names the mistake, as the notebook's check does
        diagnosis = " ".join(fixture.__doc__.split()).rstrip(".")
        assert f"This is what you get when {diagnosis}" in messages[fixture.__name__.split("__")[0]]


def test_unreadable_files_exit_2_with_a_message(tmp_path):
    broken = tmp_path / "00_broken.ipynb"
    broken.write_text("{ this is not json")
    run = grade_cli(broken, "--json")
    assert run.returncode == 2 and run.stdout == ""
    assert "not a valid notebook" in run.stderr and "Traceback" not in run.stderr

    stranger = tmp_path / "homework.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), stranger)
    run = grade_cli(stranger)
    assert run.returncode == 2 and "can't tell which chapter" in run.stderr and "Traceback" not in run.stderr

    run = grade_cli(tmp_path / "missing.ipynb")
    assert run.returncode == 2 and "cannot read" in run.stderr


def test_folder_grades_every_notebook_and_reports_unreadable_ones(tmp_path):
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "00_empty.ipynb")
    (tmp_path / "01_broken.ipynb").write_text("[]")
    run = grade_cli(tmp_path, "--json")
    assert run.returncode == 2 and "01_broken.ipynb" in run.stderr
    (report,) = json.loads(run.stdout)
    assert report["score"] == 0 and all("is not defined" in e["message"] for e in report["exercises"])
    table = grade_cli(tmp_path).stdout
    assert "00_empty.ipynb" in table and f"0 / {sum(POINTS.values()):g}" in table


@pytest.mark.parametrize("flag", ["--help"])
def test_cli_help(flag):
    run = grade_cli(flag)
    assert run.returncode == 0 and "--timeout" in run.stdout
