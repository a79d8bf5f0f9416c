"""`python -m bench.run --quick`: the benchmark runs end to end and reports figures (never asserted on speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_quick_benchmark_reports_every_section(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((tmp_path / "latest.json").read_text())
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
    markdown = (tmp_path / "latest.md").read_text()
    assert all(f"**{section}**" in markdown for section in results["sections"]) and "variance_explained" in markdown


def test_quick_grading_benchmarks_report_throughput_and_what_isolation_costs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "bench.run", "--quick", "--only", "throughput", "isolation", "--out", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    sections = json.loads((tmp_path / "latest.json").read_text())["sections"]
    one, two = sections["throughput"]
    assert (one["workers"], two["workers"]) == (1, 2) and one["notebooks"] == two["notebooks"] == 2
    assert one["notebooks_per_minute"] > 0 and two["same_reports_as_1_worker"] is True
    isolated, not_isolated = sections["isolation"]
    assert isolated["score"] == not_isolated["score"] == "8 / 8"
