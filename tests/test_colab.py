"""Colab: the first cell is written from the one address, installs only the learner's requirements
around what the runtime has, and works in a simulated Colab (slow tier).

The simulation is a fresh virtual environment (a copy of one built once per machine) holding what a Colab
runtime preinstalls, at the versions of Colab's runtime we compare with (COLAB_LIKE; torch is this machine's
2.13.0 CPU build, the only torch it has offline: Colab's is a CUDA build), a stand-in `google.colab` module imported at the
kernel's start as Colab does, and a `file://` clone of this repository in place of the published address.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from utils import colab, release
from utils.course import notebooks
from utils.paths import CHAPTERS_DIR, ROOT, SOLUTIONS_DIR, cache_dir, computing

COLAB_LIKE = ("torch==2.13.0", "numpy==2.0.2", "ipykernel==6.17.1", "matplotlib==3.10.0")
DEVELOPER_TOOLS = ("jupyterlab", "nbgrader", "pytest", "ruff", "nbqa", "nbclient", "playwright", "dask", "ipykernel")


def _requirement_names(path: Path) -> set[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {colab._name(line) for line in lines if line and not line.startswith("-")}


def _stand_in(tmp_path: Path) -> Path:
    """A folder with a `google.colab` module (empty, as far as the course cares)."""
    package = tmp_path / "standin" / "google" / "colab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Stand-in for Colab\'s module in tests."""\n')
    return tmp_path / "standin"


def test_every_notebook_starts_with_the_colab_cell_written_from_the_one_address():
    for folder in (SOLUTIONS_DIR, CHAPTERS_DIR):
        for path in notebooks(folder):
            nb = nbformat.read(path, as_version=4)
            first = next(cell for cell in nb.cells if cell.cell_type == "code")
            assert first.source == colab.colab_cell(), path
            assert {"demo", colab.TAG} <= set(first.metadata["tags"]), path
            assert first.metadata["jupyter"]["source_hidden"] and first.metadata["cellView"] == "form", path
            assert nb.cells[0].cell_type == "markdown", f"{path} should open with its prose"


def test_publishing_is_one_change(monkeypatch):
    """Changing the address in utils/colab.py changes every notebook's cell and every README badge."""
    monkeypatch.setattr(colab, "REPOSITORY", "https://github.com/someone/published")
    readme = release.readme_with_badges((ROOT / "README.md").read_text())
    chapters = notebooks(SOLUTIONS_DIR)
    assert sum("github/someone/published/blob/main/chapters/" in line for line in readme.splitlines()) == len(chapters)
    assert sum("mybinder.org/v2/gh/someone/published/main" in line for line in readme.splitlines()) == len(chapters)
    assert "mechinterp-course/course" not in "\n".join(line for line in readme.splitlines() if "badge" in line)
    solution = release.with_colab_cell(nbformat.read(chapters[0], as_version=4))
    assert "https://github.com/someone/published" in solution.cells[1].source
    assert release.stale(), "release --check must see the README and the notebooks are out of date"


def test_the_learner_requirements_hold_no_developer_tools_and_the_full_set_includes_them():
    learner = _requirement_names(ROOT / "requirements-learner.txt")
    full = (ROOT / "requirements.txt").read_text()
    assert "-r requirements-learner.txt" in full
    assert not learner & set(DEVELOPER_TOOLS), learner & set(DEVELOPER_TOOLS)
    assert {"transformer-lens", "sae-lens", "torch", "einops", "jaxtyping", "scikit-learn"} <= learner
    assert set(DEVELOPER_TOOLS) - {"ipykernel"} <= _requirement_names(ROOT / "requirements.txt")
    binder = ROOT / "binder" / "requirements.txt"
    assert "-r ../requirements-learner.txt" in binder.read_text() and "nbgrader" not in _requirement_names(binder)


def test_the_install_plan_leaves_colabs_packages_and_everything_loaded_alone():
    lines = ["torch==2.13.0", "numpy==2.4.6", "tqdm==4.70.1", 'jaxtyping==0.3.11; python_version >= "3.11"', "# comment", ""]
    wanted, constraints = colab.plan(lines, {"tqdm": "4.60.0"})
    assert wanted == ['jaxtyping==0.3.11; python_version >= "3.11"']  # torch and numpy are installed here
    assert "tqdm==4.60.0" in constraints and any(c.startswith("numpy==") for c in constraints)


def test_off_colab_the_cell_says_so_in_one_line():
    done = subprocess.run([sys.executable, "-c", colab.colab_cell()], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.count("\n") == 1 and "Not on Colab" in done.stdout, done


def test_offline_on_colab_the_cell_fails_with_one_sentence(tmp_path):
    cell = colab.colab_cell(repository="file:///nonexistent/course")
    env = {**os.environ, "PYTHONPATH": str(_stand_in(tmp_path)), "COURSE_COLAB_HOME": str(tmp_path / "content")}
    done = subprocess.run([sys.executable, "-c", "import google.colab\n" + cell], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Could not fetch the course from file:///nonexistent/course: Colab needs the internet for this cell."
    )


def _colab_like_base() -> tuple[Path | None, str]:
    """A virtual environment holding only COLAB_LIKE, built once per machine (35 s of installing) under the
    course cache, keyed by COLAB_LIKE and this Python; the test copies it (4 s) and installs the course into
    the copy. Returns (its folder, "") or (None, why it could not be built)."""
    key = hashlib.sha256(json.dumps([COLAB_LIKE, sys.version, sys._base_executable]).encode()).hexdigest()[:12]
    base = cache_dir() / "colab-like" / key
    with computing(base):
        if (base / "bin" / "python").exists():
            return base, ""
        building = Path(tempfile.mkdtemp(dir=base.parent, prefix=".tmp-"))
        try:
            subprocess.run([sys._base_executable, "-m", "venv", str(building)], check=True)
            pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            preinstalled = subprocess.run([*pip, *COLAB_LIKE], capture_output=True, text=True, timeout=1500)
            if preinstalled.returncode != 0:
                return None, preinstalled.stderr[-300:]
            # a venv names its own folder in pyvenv.cfg and its scripts; the test only runs `bin/python`
            building.rename(base)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return base, ""


def _branch() -> str:
    return subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


@pytest.mark.notebooks
def test_simulated_colab_runs_chapter_00s_first_cells_and_a_check(tmp_path):
    """A fresh environment with Colab's preinstalled packages; chapter 00's first cells run, the
    installer adds the course without touching torch, numpy, ipykernel or matplotlib, and a check passes."""
    if subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("needs the course as a git repository (it is cloned like Colab clones the published one)")
    venv = tmp_path / "colab"
    base, problem = _colab_like_base()
    if base is None:
        pytest.skip(f"could not build the Colab-like environment (no package index?): {problem}")
    shutil.copytree(base, venv, symlinks=True)  # a fresh copy: the installer below changes it, never the base
    python = venv / "bin" / "python"

    kernels = tmp_path / "kernels" / "colab"
    kernels.mkdir(parents=True)
    start = "import google.colab\nfrom ipykernel import kernelapp\nkernelapp.launch_new_instance()"
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-c", start, "-f", "{connection_file}"], "display_name": "Colab (simulated)", "language": "python",
        "env": {"PYTHONPATH": str(_stand_in(tmp_path)), "COURSE_COLAB_HOME": str(tmp_path / "content"),
                "COURSE_CACHE_DIR": str(cache_dir()), "OMP_WAIT_POLICY": "PASSIVE"},
    }))
    (tmp_path / "content").mkdir()

    learner = nbformat.read(CHAPTERS_DIR / "00_transformerlens_warmup.ipynb", as_version=4)
    solution = nbformat.read(SOLUTIONS_DIR / "00_transformerlens_warmup.ipynb", as_version=4)
    cell = colab.colab_cell(repository=f"file://{ROOT}", branch=_branch())
    setup = [c for c in learner.cells if "setup" in c.metadata.get("tags", [])]
    ids = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in solution.cells}
    # what the kernel has loaded (as Colab's kernel has before the first cell), with versions, as JSON
    loaded = (
        "import importlib.metadata as m, json, sys\n"
        "owners = m.packages_distributions()\n"
        "print(json.dumps({d: m.version(d) for mod in list(sys.modules) for d in owners.get(mod.split('.')[0], [])}))"
    )
    versions = "import importlib.metadata as m\nprint({n: m.version(n) for n in ('torch', 'numpy', 'ipykernel', 'matplotlib')})"
    cells = [versions, loaded, cell, versions, *[c.source for c in setup], "model = load_model()",
             ids["single_token_names"].source, ids["check_single_token_names"].source, loaded]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path)}
    client = NotebookClient(nb, kernel_name="colab", timeout=1500, resources={"metadata": {"path": str(tmp_path)}})
    old = dict(os.environ)
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)

    def text(index: int) -> str:
        return "".join(output.get("text", "") for output in nb.cells[index].outputs)

    assert "no restart needed" in text(2) and text(2).count("\n") == 1, text(2)
    assert text(0) == text(3), f"the installer replaced Colab's own packages: {text(0)} -> {text(3)}"
    assert "✓ single_token_names" in text(len(cells) - 2), text(len(cells) - 2)
    before, after = json.loads(text(1)), json.loads(text(len(cells) - 1))
    changed = {name: (version, after.get(name)) for name, version in before.items() if after.get(name, version) != version}
    assert not changed, f"packages the kernel had loaded were replaced (Colab would ask for a restart): {changed}"
