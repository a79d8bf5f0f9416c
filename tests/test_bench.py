"""`python -m bench.run --quick`: the benchmark runs end to end and reports figures (never asserted on speed).

A quick run takes minutes; like a notebook's end-to-end run it is kept under the code that made it
(`utils/runs.py`: every file of `bench/` and `utils/`, the requirements, Python, whether grading can be
isolated here) and its report checked again on every test run; change one of those files, or set
``COURSE_FRESH_RUNS=1``, and it runs again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT
from utils.grading.sandbox import isolation
from utils.runs import RunCache

QUICK_RUNS = RunCache("bench-quick")


def quick_bench(tmp_path: Path, *only: str) -> tuple[dict, str, Callable[[], None]]:
    """(latest.json, latest.md, keep): the report of `bench.run --quick [--only ...]`, or of its last run that
    passed from the same files; ``keep()`` stores a new run once the test's checks have passed."""
    name = "-".join(only) or "default"
    inputs = sorted((ROOT / "bench").rglob("*.py")) + sorted((ROOT / "utils").rglob("*.py")) + [ROOT / "requirements.txt"]
    extra = f"{only} {sys.version} isolated={isolation()[0]}"
    stored = QUICK_RUNS.lookup(name, inputs, extra)
    if stored is not None:
        report = json.loads(stored.notebook.read_text())
        return report["json"], report["md"], lambda: None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "bench.run", "--quick", *(["--only", *only] if only else []), "--out", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    results, markdown = json.loads((tmp_path / "latest.json").read_text()), (tmp_path / "latest.md").read_text()
    report = json.dumps({"json": results, "md": markdown})
    return results, markdown, lambda: QUICK_RUNS.store(name, inputs, [], extra, {"summary": f"bench --quick {name}"}, report)


def test_quick_benchmark_reports_every_section(tmp_path):
    results, markdown, keep = quick_bench(tmp_path)
    assert results["quick"] and set(results["sections"]) == {"model", "sae", "scaling"}
    model = results["sections"]["model"]
    forward = model["forward"]
    assert model["load_seconds"] > 0 and {row["omp_wait_policy"] for row in forward} == {"PASSIVE", "(default)"}
    assert all(row["tokens_per_s"] > 0 and row["matmul_peak_gflop_per_s"] > 0 for row in forward)
    assert all(0 < row["fraction_of_matmul_peak"] for row in forward)
    ours, saelens, chapter = results["sections"]["sae"]
    assert ours["trainer"] == "ours" and ours["l0"] == 32 and 0 < ours["variance_explained"] <= 1
    assert 0 < ours["ce_loss_recovered"] <= 1
    assert saelens == {"trainer": "saelens", "error": "skipped in --quick mode"}
    assert chapter == {"trainer": "chapter", "error": "skipped in --quick mode"}
    scaling = results["sections"]["scaling"]
    assert len(scaling) == 3 and all("error" not in row and row["train_seconds"] > 0 for row in scaling)
    assert all(f"**{section}**" in markdown for section in results["sections"]) and "variance_explained" in markdown
    keep()


def test_quick_grading_benchmarks_report_throughput_and_what_isolation_costs(tmp_path):
    results, _, keep = quick_bench(tmp_path, "throughput", "isolation")
    sections = results["sections"]
    one, two = sections["throughput"]
    assert (one["workers"], two["workers"]) == (1, 2) and one["notebooks"] == two["notebooks"] == 2
    assert one["notebooks_per_minute"] > 0 and two["same_reports_as_1_worker"] is True
    isolated, not_isolated = sections["isolation"]
    assert isolated["score"] == not_isolated["score"] == "8 / 8"
    keep()


def test_chapters_re_measures_some_rows_and_keeps_the_others(tmp_path, monkeypatch):
    from bench import run

    old = [{"notebook": f"0{n}_x.ipynb", "completed": "old"} for n in (0, 5)]
    kept = {"date": "then", "machine": "old machine", "quick": False, "sections": {"chapters": old, "model": ["m"]},
            "section_seconds": {"chapters": 600, "model": 100}}
    (tmp_path / "latest.json").write_text(json.dumps(kept))
    monkeypatch.setattr(run.chapters, "bench_chapters", lambda quick, only: [{"notebook": "05_x.ipynb", "completed": True}])
    monkeypatch.setattr(run, "markdown", lambda results: "")
    assert run.main(["--only", "chapters", "--chapters", "05", "--out", str(tmp_path)]) == 0
    merged = json.loads((tmp_path / "latest.json").read_text())
    assert merged["sections"]["chapters"] == [old[0], {"notebook": "05_x.ipynb", "completed": True}]
    assert merged["sections"]["model"] == ["m"]
    assert merged["section_seconds"]["chapters"] == 600  # a few rows: not the section's time
    assert merged["machine"] == "old machine" and "of 05" in merged["date"]


def test_a_whole_run_re_reads_the_slow_sections_it_measured_from_the_same_code(tmp_path, monkeypatch):
    from bench import run, stored

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_FRESH_RUNS", raising=False)
    monkeypatch.setattr(stored, "RUNS", stored.RunCache("bench"))  # under this test's cache
    code = tmp_path / "code.py"
    code.write_text("v = 1\n")
    monkeypatch.setattr(stored, "inputs", lambda section: [code])
    measured: list[str] = []

    def fake(section, value):
        def measure(*args):
            measured.append(section)
            return value
        return measure

    rows = [{"notebook": "02_x.ipynb", "completed": True, "seconds": 5.0}]
    for module, name, section, value in [
        (run.model, "bench_model", "model", {"load_seconds": 1.0, "forward": []}), (run.sae, "bench_trainers", "sae", []),
        (run.sae, "bench_scaling", "scaling", [{"width": "4x"}]), (run.transcoders, "bench_transcoders", "transcoders", []),
        (run.chapters, "bench_chapters", "chapters", rows), (run.grading, "bench_grading", "grading", rows),
        (run.grading, "bench_throughput", "throughput", []), (run.grading, "bench_isolation", "isolation", []),
    ]:  # fmt: skip
        monkeypatch.setattr(module, name, fake(section, value))

    def bench(*argv: str) -> dict:
        measured.clear()
        assert run.main([*argv, "--out", str(tmp_path / "out")]) == 0
        return json.loads((tmp_path / "out" / "latest.json").read_text())

    assert set(measured) == set() and "stored" not in bench() and set(measured) == set(run.SECTIONS)
    again = bench()  # the same code: the slow sections are re-read, with when they were measured and how long it took
    assert set(measured) == set(run.SECTIONS) - set(stored.STORED)
    assert set(again["stored"]) == set(stored.STORED) and again["sections"]["chapters"] == rows
    assert all(again["section_seconds"][section] == 0 for section in stored.STORED)
    markdown = (tmp_path / "out" / "latest.md").read_text()
    assert "**chapters** (re-read: measured" in markdown and "scaling, transcoders, chapters re-read" in markdown
    assert "every section measured" in markdown
    partly = bench("--only", "model")  # re-measures the model only; the others, and the notes on them, are kept
    assert measured == ["model"] and set(partly["stored"]) == set(stored.STORED)
    assert set(bench("--fresh")) and set(measured) == set(run.SECTIONS)  # --fresh measures everything
    code.write_text("v = 2\n")  # a file the slow sections are made from changed: measured again
    assert "stored" not in bench() and set(measured) == set(run.SECTIONS)
    monkeypatch.setenv("COURSE_FRESH_RUNS", "1")
    assert "stored" not in bench() and set(measured) == set(run.SECTIONS)
