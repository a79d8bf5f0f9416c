"""The grading kernel's sandbox and limits, tried directly: what it can see, write and reach, and
what happens at each cap, with and without isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import nbformat
import pytest

from tests.conftest import ROOT, SOLUTIONS
from utils import chapter04d
from utils.grading import sandbox
from utils.grading.driver import grade_notebook
from utils.grading.sandbox import Limits, isolation
from utils.paths import cache_dir

needs_bwrap = pytest.mark.skipif(not isolation()[0], reason=f"needs bubblewrap: {isolation()[1]}")
NB04D = SOLUTIONS / "04d_gradient_routing.ipynb"
POINTS = {e.function: e.points for e in chapter04d.EXERCISES}

PROBE = """
import json, os, socket, sys
from pathlib import Path
root = Path(sys.argv[1])
found = {}
import utils.grading.kernel
utils.grading.kernel.bootstrap(["utils.references.chapter00"])  # as the driver starts a kernel
import utils.chapter00  # the exercise module imports (its references are a withheld stand-in)
found["course imports"] = True
for name, path in [("solutions", root / "solutions"), ("tests", root / "tests"), ("git", root / ".git"),
                   ("withheld reference", root / "utils/references/chapter00.py"),
                   ("other reference", root / "utils/references/chapter01.py"), ("shadow", Path("/etc/shadow"))]:
    try:
        found[name] = len(path.read_bytes()) if path.exists() and not path.is_dir() else path.exists()
    except OSError as error:
        found[name] = type(error).__name__
for name, path in [("course", root / "utils" / "x"), ("cache", Path(os.environ["COURSE_CACHE_DIR"]) / "x"),
                   ("home", Path.home() / "x"), ("tmp", Path("/tmp/x"))]:
    try:
        path.write_text("x")
        found["write " + name] = True
    except OSError as error:
        found["write " + name] = type(error).__name__
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
    found["network"] = True
except OSError as error:
    found["network"] = type(error).__name__
found["environment"] = sorted(os.environ)
print(json.dumps(found))
"""


def launch(tmp_path, *flags: str, command: list[str]) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "utils.grading.launch", f"--report={tmp_path / 'report.json'}", *flags, "--", *command]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


@needs_bwrap
def test_an_isolated_kernel_sees_only_what_a_notebook_needs(tmp_path):
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    run = launch(tmp_path, "--isolate", f"--home={tmp_path}", "--withhold=utils.references.chapter00",
                 command=[sys.executable, str(tmp_path / "probe.py"), str(ROOT)])
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.splitlines()[-1])
    assert json.loads((tmp_path / "report.json").read_text())["isolated"] is True
    assert found["course imports"] is True
    assert found["solutions"] is False and found["tests"] is False and found["git"] is False and found["shadow"] is False
    assert found["withheld reference"] in ("PermissionError", 0)  # its file is there, empty or unreadable
    assert found["other reference"] > 0  # later chapters build on earlier chapters' references
    assert found["write course"] == found["write cache"] == "OSError"  # read-only
    assert found["write home"] is True and found["write tmp"] is True
    assert found["network"] in ("ConnectionRefusedError", "OSError")
    allowed = {"PATH", "HOME", "TMPDIR", "PYTHONPATH", "COURSE_CACHE_DIR", "MPLCONFIGDIR", "PWD", "LC_CTYPE"}
    allowed.add("TORCHINDUCTOR_CACHE_DIR")  # set by torch itself
    assert set(found["environment"]) <= set(sandbox.KERNEL_ENV) | allowed
    assert not (cache_dir() / "x").exists() and not (ROOT / "utils" / "x").exists()


def test_the_launcher_caps_memory_where_the_machine_allows_a_cgroup(tmp_path):
    hog = "x = bytearray(2 * 1024**3); print('kept')"
    run = launch(tmp_path, "--memory-gb=0.5", command=[sys.executable, "-c", hog])
    cgroups = json.loads((tmp_path / "report.json").read_text())["cgroups"]
    if "memory" not in cgroups:
        pytest.skip("no writable cgroup here: the watchdog enforces the cap (tested through grading below)")
    assert run.returncode != 0 and "kept" not in run.stdout


def variant(tmp_path, name: str, replace: dict[str, str]) -> str:
    nb = nbformat.read(NB04D, as_version=4)
    for cell in nb.cells:
        grader = cell.metadata.get("nbgrader", {})
        if grader.get("solution") and grader.get("grade_id") in replace:
            cell.source = textwrap.dedent(replace[grader["grade_id"]])
    path = tmp_path / f"04d_{name}.ipynb"
    nbformat.write(nb, path)
    return str(path)


HOG = """
import torch

def keep_half(z, half):
    hoard = []
    while True:
        hoard.append(torch.ones(64, 1024, 1024))
"""
SPIN = """
def keep_half(z, half):
    while True:
        pass
"""


def marks(report: dict) -> dict[str, float]:
    return {e["id"]: e["points"] for e in report["exercises"]}


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "not isolated"])
def test_a_memory_hog_costs_only_its_exercise(tmp_path, capsys, isolate):
    if isolate and not isolation()[0]:
        pytest.skip(f"needs bubblewrap: {isolation()[1]}")
    hog = variant(tmp_path, "hog", {"keep_half": HOG})
    report = grade_notebook(hog, time_limit=60, limits=Limits(memory_gb=1.5), isolate=isolate)
    message = next(e["message"] for e in report["exercises"] if e["id"] == "keep_half")
    assert "used more than the 1.5 GB of memory a kernel may use" in message
    assert marks(report) == {**POINTS, "keep_half": 0}


def test_without_isolation_grading_says_so_once(capsys, monkeypatch):
    monkeypatch.setattr(sandbox, "isolation", lambda: (False, "bubblewrap is not installed (pretend)"))
    sandbox._warned.clear()  # as in a fresh process
    for _ in range(3):
        sandbox.warn_once_if_not_isolated(True)
    sandbox.warn_once_if_not_isolated(False)  # --no-isolation asked for it: nothing to warn about
    err = capsys.readouterr().err
    assert err.count("grading WITHOUT isolation") == 1 and "pretend" in err and "limits still apply" in err


def test_a_cpu_hog_is_stopped_at_the_cpu_time_cap(tmp_path):
    report = grade_notebook(variant(tmp_path, "spin", {"keep_half": SPIN}), time_limit=120, limits=Limits(cpu_seconds=12))
    message = next(e["message"] for e in report["exercises"] if e["id"] == "keep_half")
    assert "CPU time" in message, message
    assert marks(report)["routing_mask"] == POINTS["routing_mask"]  # the others keep their points


def test_no_cgroup_is_left_behind(tmp_path):
    # only this process's kernels' cgroups (named after its pid): other graders on the machine may run
    mine = f"**/course-grade-{os.getpid()}-*"
    before = set(sandbox.CGROUP_ROOT.glob(mine))
    grade_notebook(NB04D, time_limit=60)
    assert set(sandbox.CGROUP_ROOT.glob(mine)) <= before
