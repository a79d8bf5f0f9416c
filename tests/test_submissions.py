"""The corpus of hostile submissions in tests/submissions/: each is graded with a plain message per
broken exercise, the other exercises keep their marks, and nothing on disk changes — the course's
files, its model and activation caches, the other submissions. Graded two at a time, isolated."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from tests.conftest import ROOT
from tests.submissions.build import HERE, SUBMISSIONS, TIME_LIMIT, UNREADABLE, files
from tests.test_grade_cli import POINTS, grade_cli
from utils.grading.sandbox import isolation
from utils.paths import cache_dir

pytestmark = pytest.mark.skipif(not isolation()[0], reason=f"needs bubblewrap: {isolation()[1]}")


def digests() -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in sorted(HERE.iterdir())}


def course_state() -> dict[str, str]:
    """Every file git tracks in the course, and every file of the converted model's cache, by content."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / name for name in tracked.split("\0") if name and (ROOT / name).is_file()]
    paths += sorted(p for p in cache_dir().glob("smollm2-135m-*/*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def graded():
    before, course = digests(), course_state()
    run = grade_cli(HERE, "--json", "--timeout", str(TIME_LIMIT), "--jobs", "2")
    assert digests() == before, "grading wrote to a submission"
    assert course_state() == course, "grading changed a course file or the model's cache"
    assert not (cache_dir() / "planted.txt").exists()
    return run


def test_corpus_is_built_from_the_current_reference():
    stale = [name for name, text in files().items() if not (HERE / name).exists() or (HERE / name).read_text() != text]
    assert stale == [], f"rebuild the corpus with `python -m tests.submissions.build`: {stale}"


def test_unreadable_files_exit_2_and_are_named(graded):
    assert graded.returncode == 2
    for name in UNREADABLE:
        assert name in graded.stderr
    assert "Traceback" not in graded.stderr


@pytest.mark.parametrize("name", sorted(SUBMISSIONS))
def test_submission_loses_only_its_broken_exercises(graded, name):
    reports = {r["notebook"].rsplit("/", 1)[-1]: r for r in json.loads(graded.stdout)}
    report = reports[f"{name}.ipynb"]
    expected = SUBMISSIONS[name].expected
    marks = {e["id"]: e["points"] for e in report["exercises"]}
    assert marks == {fn: 0.0 if fn in expected else points for fn, points in POINTS.items()}
    for exercise in report["exercises"]:
        if exercise["id"] in expected:
            assert expected[exercise["id"]] in exercise["message"], exercise
            assert "Traceback" not in exercise["message"] and "\n" not in exercise["message"]

