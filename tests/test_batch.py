"""A class at once: parallel grading gives what one worker gives, in a stable order; a worker that
dies costs only its notebook; a results file makes an interrupted run resume; Dask gives the same."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import nbformat
import pytest

from tests.conftest import CHAPTERS, SOLUTIONS
from utils.grading import batch
from utils.grading.batch import Options, Worker, grade_many

NB = "04d_gradient_routing.ipynb"  # the quickest chapter to grade (no language model)


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    """Three learners in nbgrader's layout: the reference, the untouched release, one wrong exercise."""
    root = tmp_path_factory.mktemp("submitted")
    wrong = nbformat.read(SOLUTIONS / NB, as_version=4)
    for cell in wrong.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "keep_half":
            cell.source = "def keep_half(z, half):\n    return z\n"
    for learner, nb in [("ada", nbformat.read(SOLUTIONS / NB, as_version=4)), ("bea", nbformat.read(CHAPTERS / NB, as_version=4)),
                        ("cy", wrong)]:
        folder = root / learner / NB.removesuffix(".ipynb")
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / NB)
    return root


def paths_of(folder) -> list:
    return sorted(folder.rglob("*.ipynb"))


@pytest.fixture(scope="module")
def serial(class_folder):
    return grade_many(paths_of(class_folder), Options(), jobs=1, progress=False)


def scores(results) -> list[tuple[str, float]]:
    return [(r["path"].rsplit("/", 3)[-3], r["report"]["score"]) for r in results]


def test_two_workers_give_what_one_gives_in_the_same_order(class_folder, serial, tmp_path):
    results_file = tmp_path / "grades.jsonl"
    parallel = grade_many(list(reversed(paths_of(class_folder))), Options(), jobs=2, results=results_file, progress=False)
    assert [r["path"] for r in parallel] == [str(p) for p in reversed(paths_of(class_folder))]  # the order asked for
    assert sorted(parallel, key=lambda r: r["path"]) == serial  # identical reports, messages included
    assert scores(serial) == [("ada", 8.0), ("bea", 0.0), ("cy", 7.0)]
    assert len(results_file.read_text().splitlines()) == 3


def test_an_interrupted_run_resumes_from_its_results_file(class_folder, serial, tmp_path, monkeypatch):
    results_file = tmp_path / "grades.jsonl"
    paths = paths_of(class_folder)
    grade_many(paths[:2], Options(), jobs=1, results=results_file, progress=False)  # "interrupted" after two
    graded = []
    real = Worker.grade
    monkeypatch.setattr(Worker, "grade", lambda self, path, options: graded.append(path) or real(self, path, options))
    resumed = grade_many(paths, Options(), jobs=1, results=results_file, progress=False)
    assert graded == [paths[2]]  # only the one not yet graded
    assert resumed == serial


FAKE_WORKER = """
import json, os, sys
for line in sys.stdin:
    request = json.loads(line)
    if "poison" in request["path"]:
        os._exit(3)  # the grading process dies on this notebook
    print(json.dumps({"path": request["path"], "report": {"graded": request["path"]}}), flush=True)
"""


def test_a_dead_worker_costs_only_the_notebook_it_was_grading(tmp_path, monkeypatch):
    script = tmp_path / "fake_worker.py"
    script.write_text(textwrap.dedent(FAKE_WORKER))
    fake = [sys.executable, str(script)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    monkeypatch.setattr(Worker, "_start", lambda self: subprocess.Popen(fake, **pipes))
    paths = [tmp_path / f"{name}.ipynb" for name in ["a", "b", "poison", "c", "d"]]
    for path in paths:
        path.write_text("{}")
    results = grade_many(paths, Options(), jobs=2, progress=False)
    assert [r["path"] for r in results] == [str(p) for p in paths]
    assert [("report" in r, "failed" in r) for r in results] == [(True, False)] * 2 + [(False, True)] + [(True, False)] * 2
    assert "died or hung" in results[2]["failed"]


def test_the_cli_grades_a_class_in_parallel_and_writes_the_lms_files(class_folder, serial, tmp_path):
    from tests.test_grade_cli import grade_cli

    files = ["--csv", tmp_path / "gradebook.csv", "--canvas", tmp_path / "canvas.csv", "--gradescope", tmp_path / "gradescope"]
    run = grade_cli(class_folder, "--json", "--jobs", "2", *files, "--feedback", tmp_path / "feedback")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [r["report"] for r in serial]
    rows = (tmp_path / "gradebook.csv").read_text().splitlines()
    assert rows[0].startswith("learner,04d:group_losses,04d:keep_half,") and rows[0].endswith(",total,max_total")
    assert [row.split(",")[0] for row in rows[1:]] == ["ada", "bea", "cy"]
    assert rows[3].split(",")[-2:] == ["7", "8"]
    canvas = (tmp_path / "canvas.csv").read_text().splitlines()
    assert canvas[0] == "Student,ID,SIS User ID,SIS Login ID,Section,04d_gradient_routing"
    assert canvas[1] == "Points Possible,,,,,8" and canvas[4] == "cy,,,cy,,7"
    results = json.loads((tmp_path / "gradescope" / "cy" / "04d_gradient_routing" / "results.json").read_text())
    assert results["score"] == 7 and {t["name"]: t["score"] for t in results["tests"]}["keep_half"] == 0
    assert "keep_half" in (tmp_path / "feedback" / "cy.md").read_text()


def test_dask_gives_the_same_results(class_folder, serial):
    pytest.importorskip("dask.distributed")
    assert grade_many(paths_of(class_folder), Options(), jobs=2, backend="dask", progress=False) == serial


def test_options_travel_to_the_workers():
    request = Options(time_limit=12, isolate=False).request("x.ipynb")
    assert request["time_limit"] == 12 and request["isolate"] is False and request["limits"]["memory_gb"] == 4.0
    assert batch.Options().deadline("missing.ipynb") > 0
