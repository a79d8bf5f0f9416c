"""Slow tier: every reference notebook runs end to end in a fresh kernel without an error."""

from __future__ import annotations

import os
import shutil
import time

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

from tests.conftest import ROOT, SOLUTIONS
from utils.course import notebooks

NOTEBOOKS = notebooks(SOLUTIONS)


@pytest.mark.notebooks
@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.name)
def test_reference_notebook_runs_end_to_end(source, tmp_path):
    path = shutil.copy(source, tmp_path / source.name)  # run a copy: the source is never written
    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    client = NotebookClient(nb, km=km, timeout=900, resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    try:
        client.execute(env={**os.environ, "PYTHONPATH": str(ROOT)})  # inline figures
    finally:
        run_sync(km.shutdown_kernel)(now=True)  # nbclient leaves a kernel it did not create running
    print(f"{source.name}: {time.perf_counter() - start:.0f} s end to end")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    figures = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, "the notebook drew no figure"
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert checks and all("✓" in "".join(o.get("text", "") for o in c.outputs) for c in checks)
