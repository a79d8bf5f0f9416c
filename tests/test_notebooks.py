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
from utils import figures
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
    assert_expected_figures_are_current(source, nb, tmp_path)


def assert_expected_figures_are_current(source, nb, tmp_path, tolerance: float = 12.0):
    """Every demo cell that draws has an expected figure in the learner's notebook, and it still looks like
    what the cell draws now (RMS difference of the pixels, 0-255, below ``tolerance``: a number in a title
    may differ from machine to machine, a changed plot does not pass)."""
    from matplotlib.testing.compare import compare_images

    demo = {c.id for c in nb.cells if "demo" in c.metadata.get("tags", [])}
    drawn = {cid: images for cid, images in figures.drawn(nb).items() if cid in demo}
    entries = figures.manifest(source)
    assert sorted(drawn) == sorted(entries), "run `make figures` (and `make release`): the expected figures are out of date"
    for cid, images in drawn.items():
        assert len(images) == len(entries[cid]["figures"]), f"cell {cid}: {len(images)} figures now"
        for png, entry in zip(images, entries[cid]["figures"]):
            (tmp_path / "now.png").write_bytes(figures.shrink(png))
            expected = figures.folder(source) / entry["file"]
            difference = compare_images(str(expected), str(tmp_path / "now.png"), tol=tolerance, in_decorator=True)
            assert difference is None or difference["rms"] <= tolerance, f"{entry['file']}: {difference}"
