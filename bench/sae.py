"""Our chapter-02 SAE trainer beside SAELens's, and how training cost scales (used by bench/run.py).

SAELens 6.54 installs beside our pins (it accepts transformer-lens < 4 and transformers < 6), so it is
in requirements.txt and both trainers run in the course's environment. Every run is a separate
process (`bench/sae_runner.py`), so times and peak memory are measured the same way for both.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import GB, PeakMemory, children
from utils.paths import ROOT, SAE_HOOK

RUNNER = ROOT / "bench" / "sae_runner.py"
D_MODEL = 576


def activations_file(directory: Path, n_seqs: int) -> Path:
    """The chapter's cached SmolLM2 activations (computed once, then read from the course cache), as a file."""
    from safetensors.torch import save_file

    from utils.data import cached_activations
    from utils.models import load_model

    acts = cached_activations(load_model(verbose=False), SAE_HOOK, seq_len=128, n_seqs=n_seqs)
    path = directory / "activations.safetensors"
    save_file({"activations": acts.contiguous()}, path)
    return path


def run(python: Path | str, trainer: str, activations: Path, **options: Any) -> dict[str, Any]:
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [str(python), str(RUNNER), trainer, str(activations), *flags]
    with PeakMemory(children) as memory:  # sampled from here: the child's ru_maxrss would include ours (kept across exec)
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"trainer": trainer, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "peak_gb": round(memory.peak / GB, 2)}


def bench_trainers(quick: bool) -> list[dict[str, Any]]:
    """Ours and SAELens's TopK trainers: same activations, width, k, batches, learning rate and steps; each
    scored on the same held-out activations and by its CE loss recovered on the same later corpus text. Then
    chapter 02's own SAE (`utils.sae.pretrained.pretrained_sae`, trained once per machine), scored the same way."""
    n_seqs = 200 if quick else 1200
    size = {"d_sae": 4 * D_MODEL, "steps": 50, "ce_seqs": 4} if quick else {"d_sae": 8 * D_MODEL, "steps": 600, "ce_seqs": 32}
    options = {**size, "k": 32, "corpus_seqs": n_seqs}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        activations = activations_file(Path(tmp), n_seqs)
        rows.append(run(sys.executable, "ours", activations, **options))
        print(f"  {rows[-1]}", flush=True)
        if quick:
            rows.append({"trainer": "saelens", "error": "skipped in --quick mode"})
        elif importlib.util.find_spec("sae_lens") is None:
            rows.append({"trainer": "saelens", "error": "SAELens is not installed (pip install sae-lens==6.54.12)"})
        else:
            rows.append(run(sys.executable, "saelens", activations, **options))
            print(f"  {rows[-1]}", flush=True)
        if quick:
            rows.append({"trainer": "chapter", "error": "skipped in --quick mode"})
        else:  # chapter 02's own SAE (its recipe, on the same activations: the chapter's, from the course's cache)
            rows.append(run(sys.executable, "chapter", activations, ce_seqs=size["ce_seqs"], corpus_seqs=n_seqs))
            print(f"  {rows[-1]}", flush=True)
    if all("tokens_per_s" in r for r in rows[:2]):
        rows[0]["speed_vs_saelens"] = round(rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"], 2)
    return rows


def bench_scaling(quick: bool) -> list[dict[str, Any]]:
    """Our trainer's time and memory as the width doubles (fixed tokens), then as the tokens double (fixed
    width). The next doubling, 8x d_model for 600 steps, is the sae section's run of our trainer (not repeated)."""
    steps = 20 if quick else 150
    widths = [4, 8] if quick else [4, 8, 16]
    token_steps = [steps, 2 * steps]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        activations = activations_file(Path(tmp), 200 if quick else 1200)
        points = [(w, steps) for w in widths] + [(8 if not quick else 4, s) for s in token_steps[1:]]
        for width, n_steps in points:
            row = run(sys.executable, "ours", activations, d_sae=width * D_MODEL, k=32, steps=n_steps)
            rows.append({"width": f"{width}x d_model", **row})
            print(f"  {row}", flush=True)
    return rows
