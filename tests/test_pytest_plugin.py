"""pytest as a grading front end: a learner's notebook becomes one test item per exercise, with its
points in JUnit XML (what GitHub Classroom-style autograding reads)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from tests.conftest import CHAPTERS, ROOT, SOLUTIONS
from utils import chapter04d

NB = "04d_gradient_routing.ipynb"


def run_pytest(tmp_path, notebook) -> tuple[subprocess.CompletedProcess, ET.Element]:
    xml = tmp_path / "grades.xml"
    command = [sys.executable, "-m", "pytest", "-p", "utils.grading.pytest_plugin", str(notebook), f"--junitxml={xml}", "-q",
               "-p", "no:cacheprovider", "-o", "addopts="]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return run, ET.parse(xml).getroot()


def properties(case: ET.Element) -> dict[str, float]:
    return {p.get("name"): float(p.get("value")) for p in case.iter("property")}


def test_the_reference_notebook_passes_every_item_with_its_points(tmp_path):
    run, root = run_pytest(tmp_path, SOLUTIONS / NB)
    assert run.returncode == 0, run.stdout + run.stderr
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert list(cases) == [e.function for e in chapter04d.EXERCISES]
    for exercise in chapter04d.EXERCISES:
        assert properties(cases[exercise.function]) == {"points": exercise.points, "max_points": exercise.points}
        assert cases[exercise.function].find("failure") is None


def test_the_learner_notebook_fails_every_item_with_the_grade_message(tmp_path):
    run, root = run_pytest(tmp_path, CHAPTERS / NB)
    assert run.returncode == 1
    for case in root.iter("testcase"):
        failure = case.find("failure")
        assert failure is not None and "not implemented yet" in (failure.get("message", "") + (failure.text or ""))
        assert properties(case)["points"] == 0
    assert "5 failed" in run.stdout


def test_other_notebooks_are_not_collected_unless_named(tmp_path):
    command = [sys.executable, "-m", "pytest", "-p", "utils.grading.pytest_plugin", "--collect-only", "-q",
               str(ROOT / "tests" / "test_course.py"), "-p", "no:cacheprovider", "-o", "addopts="]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert ".ipynb" not in run.stdout
