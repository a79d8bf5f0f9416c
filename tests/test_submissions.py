"""The corpus of hostile submissions in tests/submissions/: each is graded with a plain message per
broken exercise, the other exercises keep their marks, and no file is written."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.submissions.build import HERE, SUBMISSIONS, TIME_LIMIT, UNREADABLE, files
from tests.test_grade_cli import POINTS, grade_cli


def digests() -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in sorted(HERE.iterdir())}


@pytest.fixture(scope="module")
def graded():
    before = digests()
    run = grade_cli(HERE, "--json", "--timeout", str(TIME_LIMIT))
    assert digests() == before, "grading wrote to a submission"
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

