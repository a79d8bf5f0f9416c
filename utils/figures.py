"""Expected figures: what each demo cell draws in the reference run, shown beside it before anyone runs it.

``python -m utils.figures [CHAPTER ...]`` (``make figures``) executes each reference notebook in a
fresh kernel and keeps every figure a demo cell draws — downscaled, 128 colours, its titles as alt
text — in ``solutions/figures/<notebook>/``, with ``figures.json`` recording each cell's source hash.
``make release`` then puts a cell's figures, as Markdown attachments (they travel inside the notebook:
JupyterLab, Colab, Binder, GitHub and nbviewer show them offline), in a cell right after it, tagged
``expected``, in the solution and in the learner notebook. Tests fail when a demo cell that draws has
no expected figure or one that no longer looks like what it draws (`tests/test_notebooks.py`, which
runs every notebook anyway: pixel by pixel on the `machine` the figures were made on; elsewhere, where
trained models come out a little different, the same figures of the same sizes), or when a demo cell
changed since its figure was made (`tests/test_release.py`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat

from utils import paths
from utils.course import chapter_id, notebooks

MAX_WIDTH = 900  # pixels; figures are drawn at ~100 dpi, most are narrower
COLOURS = 128
EXPECTED_TAG = "expected"
CAPTION = (
    "**Expected figure** — from the reference run (`make figures`). Compare yours with it; last digits, "
    "single pixels and the ids of SAE latents can differ on another machine, and so can the wiggles of a "
    "curve traced by a model trained in this notebook."
)
# Runs first in the reference kernel: every figure drawn records its titles (the figure's alt text)
# under the hash of the PNG it became, so each output image finds its own titles (a widget that draws
# without showing, or a figure shown after its cell ended, cannot shift them).
TITLE_HOOK = """
import hashlib as _hashlib
import json as _json
import matplotlib.backend_bases as _backend_bases
_print_figure = _backend_bases.FigureCanvasBase.print_figure
def _recording_print_figure(self, *args, **kwargs):
    fig = self.figure
    titles = [fig._suptitle.get_text()] if getattr(fig, "_suptitle", None) is not None else []
    titles += [ax.get_title() for ax in fig.axes if ax.get_title()]
    result = _print_figure(self, *args, **kwargs)
    if args and hasattr(args[0], "getvalue"):
        with open({path!r}, "a") as _out:
            _out.write(_json.dumps(dict(png=_hashlib.sha1(args[0].getvalue()).hexdigest(), titles=titles)) + "\\n")
    return result
_backend_bases.FigureCanvasBase.print_figure = _recording_print_figure
"""


def folder(source: Path) -> Path:
    return paths.SOLUTIONS_DIR / "figures" / source.stem


def machine() -> dict[str, Any]:
    """What decides a figure's last bits besides the code: the CPU (its vendor and model, and the vector
    instructions torch uses on it), the number of threads and torch's version. The figures of a model trained in
    the notebook (an SAE, a probe, a routed autoencoder) come out visibly different on another CPU: float sums in
    another order, a few thousand steps later (measured: an AMD EPYC with AVX2 against an Intel Xeon with AVX-512)."""
    import platform

    import torch

    cpu = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("vendor_id", "model name") and key.strip() not in cpu:
                cpu[key.strip()] = value.strip()
    except OSError:
        pass
    return {
        "cpu": cpu.get("model name") or platform.processor() or platform.machine(),
        "vendor": cpu.get("vendor_id", platform.machine()),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def made_on(source: Path) -> dict[str, Any] | None:
    """The `machine` a notebook's expected figures were made on (None: not recorded)."""
    path = folder(source) / "figures.json"
    return json.loads(path.read_text()).get("machine") if path.exists() else None


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def manifest(source: Path) -> dict[str, Any]:
    """``{cell id: {"source_sha", "figures": [{"file", "alt"}]}}`` for one reference notebook ({} if none)."""
    path = folder(source) / "figures.json"
    return json.loads(path.read_text())["cells"] if path.exists() else {}


def shrink(png: bytes) -> bytes:
    """A figure small enough to travel inside a notebook: at most MAX_WIDTH wide, 128 colours."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


def alt_text(titles: list[str]) -> str:
    shown = "; ".join(t.replace("\n", " ") for t in titles if t)
    return f"Expected figure: {shown}" if shown else "Expected figure of the cell above"


def drawn(nb: nbformat.NotebookNode) -> dict[str, list[bytes]]:
    """The PNG figures each code cell of an executed notebook drew, by cell id."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            outputs = cell.get("outputs", [])
            images = [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
            if images:
                out[cell.id] = images
    return out


def execute(source: Path, titles_file: Path) -> nbformat.NotebookNode:
    """The reference notebook, executed in a fresh kernel (a copy; the file is not written)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    nb = nbformat.read(source, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(TITLE_HOOK.format(path=str(titles_file))))
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    client = NotebookClient(nb, km=km, timeout=1800, resources={"metadata": {"path": str(source.parent)}})
    try:
        client.execute(env={**os.environ, "PYTHONPATH": str(paths.ROOT), "OMP_WAIT_POLICY": "PASSIVE"})
    finally:
        run_sync(km.shutdown_kernel)(now=True)
    nb.cells.pop(0)
    return nb


def make(source: Path) -> dict[str, Any]:
    """Execute one reference notebook and write its expected figures and manifest."""
    with tempfile.TemporaryDirectory() as tmp:
        titles_file = Path(tmp) / "titles.jsonl"
        nb = execute(source, titles_file)
        records = [json.loads(line) for line in titles_file.read_text().splitlines()] if titles_file.exists() else []
    titles = {record["png"]: record["titles"] for record in records}
    target = folder(source)
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.png"):
        old.unlink()
    cells = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or "demo" not in cell.metadata.get("tags", []):
            continue
        figures = []
        for n, png in enumerate(drawn(nbformat.v4.new_notebook(cells=[cell])).get(cell.id, []), start=1):
            name = f"{cell.id}-{n}.png"
            (target / name).write_bytes(shrink(png))
            figures.append({"file": name, "alt": alt_text(titles.get(hashlib.sha1(png).hexdigest(), []))})
        if figures:
            cells[cell.id] = {"source_sha": source_hash(cell.source), "figures": figures}
    record = {"notebook": source.name, "machine": machine(), "cells": cells}
    (target / "figures.json").write_text(json.dumps(record, indent=1) + "\n")
    return cells


def expected_cell(cell_id: str, entry: dict[str, Any], images: Path) -> nbformat.NotebookNode:
    """The markdown cell that shows a demo cell's expected figures (attachments: inside the notebook)."""
    lines = [CAPTION, ""] + [f"![{f['alt']}](attachment:{f['file']})" for f in entry["figures"]]
    cell = nbformat.v4.new_markdown_cell("\n".join(lines))
    cell.id = f"expected-{cell_id}"[:64]
    cell.metadata = {"tags": [EXPECTED_TAG]}
    cell.attachments = {
        f["file"]: {"image/png": base64.b64encode((images / f["file"]).read_bytes()).decode()} for f in entry["figures"]
    }
    return cell


def with_expected(nb: nbformat.NotebookNode, source: Path) -> nbformat.NotebookNode:
    """``nb`` with an expected-figure cell after every demo cell that has figures (old ones replaced)."""
    entries = manifest(source)
    cells = []
    for cell in nb.cells:
        if EXPECTED_TAG in cell.metadata.get("tags", []):
            continue
        cells.append(cell)
        if cell.get("id") in entries:
            cells.append(expected_cell(cell.id, entries[cell.id], folder(source)))
    nb.cells = cells
    return nb


def stale(source: Path) -> list[str]:
    """Demo cells whose source changed since their figures were made (the figures need `make figures`)."""
    nb = nbformat.read(source, as_version=4)
    current = {c.id: source_hash(c.source) for c in nb.cells if c.cell_type == "code"}
    return [f"{source.name}: cell {cid} changed since its expected figure was made"
            for cid, entry in manifest(source).items() if current.get(cid) != entry["source_sha"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.figures", description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    args = parser.parse_args(argv)
    for source in notebooks(paths.SOLUTIONS_DIR):
        if not args.chapters or chapter_id(source.name) in args.chapters:
            cells = make(source)
            size = sum(p.stat().st_size for p in folder(source).glob("*.png"))
            count = sum(len(e["figures"]) for e in cells.values())
            print(f"{source.name}: {count} figures in {len(cells)} cells, {size / 1024:.0f} KB", flush=True)
    print("now run `make release` to put them in the notebooks", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
