"""The pinned requirements resolve on every Python the course supports (slow tier: needs PyPI).

Colab moves its Python forward, so `requirements.txt` (and the learner's subset it includes) must
resolve on 3.10 to 3.13. `uv pip compile --python-version` resolves for a target Python, environment
markers included, from the packages' metadata only (pip's `--python-version` does not apply to
markers, and a real install per version would download a CUDA build of torch each time). The course
itself is tested on Python 3.11 (this machine's); on other versions only the resolution is checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from utils.paths import ROOT

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
UV = "uv==0.13.9"


@pytest.fixture(scope="module")
def uv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("uv")
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", UV], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"could not install {UV} (no package index?): {done.stderr[-300:]}")
    return venv / "bin" / "uv"


@pytest.mark.notebooks
@pytest.mark.parametrize("python", PYTHONS)
def test_requirements_resolve(uv, python, tmp_path):
    lock = tmp_path / "resolved.txt"
    done = subprocess.run(
        [str(uv), "pip", "compile", "--quiet", "--python-version", python, "--python-platform", "x86_64-unknown-linux-gnu",
         str(ROOT / "requirements.txt"), "-o", str(lock)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, f"requirements.txt does not resolve on Python {python}:\n{done.stderr[-2000:]}"
    pinned = {line.split("==")[0] for line in lock.read_text().splitlines() if "==" in line}
    assert {"torch", "transformer-lens", "sae-lens", "nbgrader", "jupyterlab"} <= pinned
