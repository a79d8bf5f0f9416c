"""The benchmark's chapters and grading sections measure memory under a cgroup cap: their quick runs, and
that the cap is really enforced."""

from __future__ import annotations

import nbformat
import pytest

from bench import chapters, grading
from utils.grading import capped
from utils.grading.capped import execute_capped

NO_CGROUP = capped.cgroup_available()
needs_cgroup = pytest.mark.skipif(bool(NO_CGROUP), reason=NO_CGROUP or "")


def test_without_a_cgroup_the_rows_say_so(monkeypatch):
    for section in [chapters, grading]:
        monkeypatch.setattr(section, "cgroup_available", lambda memory_gb: "no memory cgroup can be created here; not measured")
    rows = chapters.bench_chapters(quick=True) + grading.bench_grading(quick=True)
    assert [(row["notebook"], row["cap_gb"]) for row in rows] == [
        ("04d_gradient_routing.ipynb", None), ("solutions/04d_gradient_routing.ipynb", None)]
    assert all("not measured" in row["completed"] for row in rows)


@needs_cgroup
def test_the_quick_sections_run_04d_under_their_caps():
    (chapter,), (graded,) = chapters.bench_chapters(quick=True), grading.bench_grading(quick=True)
    assert chapter["notebook"] == "04d_gradient_routing.ipynb" and chapter["cap_gb"] == chapters.CHAPTER_CAP_GB
    assert chapter["completed"] is True and chapter["errors"] == []
    assert 0 < chapter["anonymous_peak_gb"] <= chapter["cgroup_peak_gb"] <= chapters.CHAPTER_CAP_GB
    assert chapter["seconds"] > 0
    assert graded["notebook"] == "solutions/04d_gradient_routing.ipynb" and graded["cap_gb"] == grading.GRADING_CAP_GB
    assert graded["completed"] is True and graded["score"] == "8 / 8"
    assert 0 < graded["cgroup_peak_gb"] <= grading.GRADING_CAP_GB
    assert graded["nested_kernel_cgroup"], "the grader's kernel was not charged to the grader's cgroup"


def allocate(gigabytes: float) -> nbformat.NotebookNode:
    """A notebook that allocates (and touches) ``gigabytes`` of memory, then prints "done"."""
    code = f"import numpy\nheld = numpy.ones(int({gigabytes} * 2**30) // 8)\nprint('done', held.nbytes)"
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])


@needs_cgroup
@pytest.mark.parametrize("cap_gb, completes", [(1.5, False), (3.0, True)])  # the second shows the check can fail
def test_the_cap_is_enforced(tmp_path, cap_gb, completes):
    nb = allocate(2.0)
    run = execute_capped(nb, tmp_path, cap_gb, timeout=120)
    assert run["capped"]
    assert (run["completed"] is True) == completes, run
    if completes:
        assert run["anonymous_peak_gb"] > 1.9 and "done" in nb.cells[0].outputs[0]["text"]
    else:
        assert "memory limit hit" in run["completed"]
        assert run["cgroup_peak_gb"] <= cap_gb + 0.01
