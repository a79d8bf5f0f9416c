"""What the course costs to run and grade on this machine: ``python -m bench.run [--quick]``.

Prints one table per section and writes ``bench/results/latest.json`` and ``latest.md``:

- chapters: every solution notebook end to end in a fresh kernel (nbclient) — wall time, peak
  resident memory of the kernel (sampled every 0.1 s), and time/memory once the setup cells (which
  load the model) have run;
- grading: ``python -m utils.grade`` on each solution and each fresh student notebook — wall time
  and peak memory of the grader plus its kernel;
- model: load time of the bundled model, forward throughput at a few batch sizes, and the FLOP/s
  achieved beside a matmul peak measured in the same run;
- sae: our chapter-02 trainer beside SAELens's on the same cached activations (see bench/sae.py);
- scaling: SAE training time and memory as the width and the token budget double.

``--quick`` (a smoke run, used by the test suite) measures the model and a small SAE only.
Figures are printed, never asserted: targets are in the issue and in the README's Performance section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the grader and its kernel run side by side

import psutil  # noqa: E402
import torch  # noqa: E402

from utils.course import notebooks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GB = 1024**3


# ---------------------------------------------------------------------------------------------
# Measuring


class PeakMemory:
    """Samples the resident memory of processes every 0.1 s in a thread; keeps the peak (bytes).

    ``which()`` returns the processes to add up at each sample (e.g. this process's children).
    """

    def __init__(self, which: Callable[[], list[psutil.Process]]):
        self.which, self.peak, self.current = which, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for process in self.which():
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.current, self.peak = total, max(self.peak, total)
            self._stop.wait(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def this_process() -> list[psutil.Process]:
    return [psutil.Process()]


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    timing: dict[str, float] = {}
    start = time.perf_counter()
    yield timing
    timing["seconds"] = time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Sections


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
    client = NotebookClient(nb, km=km, timeout=1800, resources={"metadata": {"path": str(ROOT / "solutions")}})
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
    for source in notebooks(ROOT / "solutions"):
        rows.append(run_notebook(source))
        print(f"  {rows[-1]}", flush=True)
    return rows


def bench_grading() -> list[dict[str, Any]]:
    rows = []
    paths = notebooks(ROOT / "solutions") + notebooks(ROOT / "chapters")
    for path in paths:
        command = [sys.executable, "-m", "utils.grade", str(path), "--json"]
        with PeakMemory(children) as memory, stopwatch() as timing:
            run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        report = json.loads(run.stdout) if run.returncode == 0 else {}
        rows.append(
            {
                "notebook": f"{path.parent.name}/{path.name}",
                "seconds": round(timing["seconds"], 1),
                "peak_gb": round(memory.peak / GB, 2),
                "score": f"{report.get('score', float('nan')):g} / {report.get('max_score', float('nan')):g}",
            }
        )
        print(f"  {rows[-1]}", flush=True)
    return rows


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Achieved FLOP/s of a square float32 matmul (the best of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def forward_flops_per_token(model: Any, seq_len: int) -> float:
    """Multiply-adds of one forward pass per token, ×2: every weight matrix (incl. the unembedding)
    plus attention scores and mixing (causal: on average seq_len / 2 keys)."""
    cfg = model.cfg
    d_kv = cfg.n_key_value_heads * cfg.d_head if cfg.n_key_value_heads else cfg.n_heads * cfg.d_head
    attn_weights = cfg.d_model * (2 * cfg.n_heads * cfg.d_head + 2 * d_kv)  # W_Q, W_O, W_K, W_V
    mlp_weights = cfg.d_model * cfg.d_mlp * (3 if cfg.gated_mlp else 2)
    attention = 2 * cfg.n_heads * cfg.d_head * seq_len / 2  # QK^T and pattern @ V
    per_layer = attn_weights + mlp_weights + attention
    return 2 * (cfg.n_layers * per_layer + cfg.d_model * cfg.d_vocab)


def bench_model(quick: bool) -> dict[str, Any]:
    code = (
        "import time; t = time.perf_counter(); from utils.models import load_model; i = time.perf_counter(); "
        "load_model(verbose=False); print(i - t, time.perf_counter() - i)"
    )
    with PeakMemory(children) as memory:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    import_seconds, load_seconds = map(float, run.stdout.strip().splitlines()[-1].split())
    from utils.models import load_model

    model = load_model(verbose=False)
    peak = matmul_peak()
    seq_len = 128
    rows = []
    for batch in [1, 8] if quick else [1, 8, 32]:
        tokens = torch.randint(1000, 20000, (batch, seq_len), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            model(tokens[:1, :16])  # warm-up
            repeats = 1 if quick else 3
            start = time.perf_counter()
            for _ in range(repeats):
                model(tokens)
            seconds = (time.perf_counter() - start) / repeats
        flops = forward_flops_per_token(model, seq_len) * batch * seq_len / seconds
        rows.append(
            {
                "batch": batch,
                "seq_len": seq_len,
                "tokens_per_s": round(batch * seq_len / seconds),
                "gflop_per_s": round(flops / 1e9, 1),
                "fraction_of_matmul_peak": round(flops / peak, 2),
            }
        )
        print(f"  {rows[-1]}", flush=True)
    return {
        "import_seconds": round(import_seconds, 2),  # torch, transformer_lens
        "load_seconds": round(load_seconds, 2),  # the cached, converted weights
        "load_process_peak_gb": round(memory.peak / GB, 2),
        "matmul_peak_gflop_per_s": round(peak / 1e9, 1),
        "forward": rows,
    }


# ---------------------------------------------------------------------------------------------
# Report


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(key for row in rows for key in row))  # every row's keys, first seen first
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(_cell(row.get(key, "")) for key in keys) + " |" for row in rows] + [""]


def markdown(results: dict[str, Any]) -> str:
    command = "python -m bench.run" + (" --quick" if results["quick"] else "")
    lines = [f"Measured {results['date']} on {results['machine']} (`{command}`).", ""]
    for section, value in results["sections"].items():
        lines += [f"**{section}**", ""]
        if isinstance(value, dict):  # scalars, then each list of rows as its own table
            lines += markdown_table([{k: v for k, v in value.items() if not isinstance(v, list)}])
            for rows in (v for v in value.values() if isinstance(v, list)):
                lines += markdown_table(rows)
        else:
            lines += markdown_table(value)
    return "\n".join(lines)


SECTIONS = ["model", "sae", "scaling", "chapters", "grading"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: the model and a small SAE only (~1 min)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="re-measure only these sections (keeps the others in --out)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for latest.json and latest.md")
    args = parser.parse_args(argv)
    sections = args.only or (["model", "sae", "scaling"] if args.quick else SECTIONS)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / GB:.0f} GB, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "quick": args.quick,
        "sections": {},
    }
    from bench import sae

    runners: dict[str, Callable[[], Any]] = {
        "model": lambda: bench_model(args.quick),
        "sae": lambda: sae.bench_trainers(args.quick),
        "scaling": lambda: sae.bench_scaling(args.quick),
        "chapters": bench_chapters,
        "grading": bench_grading,
    }
    for section in sections:
        print(f"{section}:", flush=True)
        with stopwatch() as timing:
            results["sections"][section] = runners[section]()
        print(f"  ({timing['seconds']:.0f} s)", flush=True)
    previous = args.out / "latest.json"
    if args.only and previous.exists():  # re-measured sections replace theirs; the others are kept
        kept = json.loads(previous.read_text())
        if kept.get("quick") == args.quick:
            results["sections"] = {**kept["sections"], **results["sections"]}
            results["date"] = f"{kept['date']} ({', '.join(sections)}: {results['date']})"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "latest.md").write_text(markdown(results) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
