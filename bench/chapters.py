"""The chapters end to end: each solution notebook in a fresh kernel, its time and peak memory."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psutil

from bench.measure import GB, PeakMemory, children
from utils.course import notebooks
from utils.paths import ROOT, SOLUTIONS_DIR


def run_notebook(source: Path) -> dict[str, Any]:
    """One solution notebook end to end in a fresh kernel; its time and the kernel's peak memory."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    nb = nbformat.read(source, as_version=4)
    last_setup = max((i for i, c in enumerate(nb.cells) if "setup" in c.metadata.get("tags", [])), default=-1)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    client = NotebookClient(nb, km=km, timeout=1800, resources={"metadata": {"path": str(SOLUTIONS_DIR)}})
    after_setup: dict[str, float] = {}
    others = {p.pid for p in children()}  # only this notebook's kernel counts

    def kernel() -> list[psutil.Process]:
        return [p for p in children() if p.pid not in others]

    start = time.perf_counter()
    with PeakMemory(kernel) as memory:

        def on_cell_executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
            if cell_index == last_setup:
                after_setup.update(seconds=time.perf_counter() - start, rss=memory.current)

        client.on_cell_executed = on_cell_executed
        try:
            client.execute(env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
        finally:
            run_sync(km.shutdown_kernel)(now=True)  # nbclient leaves a kernel it did not create running
    return {
        "notebook": source.name,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_gb": round(memory.peak / GB, 2),
        "setup_seconds": round(after_setup.get("seconds", 0.0), 1),
        "setup_gb": round(after_setup.get("rss", 0) / GB, 2),
        "errors": sum(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", [])),
    }


def bench_chapters() -> list[dict[str, Any]]:
    rows = []
    for source in notebooks(SOLUTIONS_DIR):
        rows.append(run_notebook(source))
        print(f"  {rows[-1]}", flush=True)
    return rows
