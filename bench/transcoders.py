"""Chapter 05's transcoders trained from nothing: time, peak memory and the held-out figures (issue 20's budget).

One process (``python -m bench.transcoders CONFIG``) trains the chapter's band with `utils.transcoders.train_transcoders`
— nothing read from or written to the transcoder cache — and prints its figures as JSON; its peak memory is
sampled from here, as `bench/sae.py` does. The model's converted weights come from the course's cache as usual.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

from bench.measure import GB, PeakMemory, children
from utils.paths import ROOT


def bench_transcoders(quick: bool) -> list[dict[str, Any]]:
    """One row: the chapter's configuration (``quick``: a 4-layer band on 32 sequences, to test the section)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with PeakMemory(children) as memory:
        done = subprocess.run([sys.executable, "-m", "bench.transcoders", "quick" if quick else "chapter"],
                              capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        return [{"config": "quick" if quick else "chapter", "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}]
    return [{**json.loads(done.stdout.strip().splitlines()[-1]), "peak_gb": round(memory.peak / GB, 2)}]


def main(which: str) -> None:
    from utils.chapter05 import CONFIG
    from utils.models import load_model
    from utils.transcoders import train_transcoders

    small = {"layers": (26, 27, 28, 29), "d_sae": 512, "n_seqs": 32, "chunk_seqs": 16, "passes": 2}
    cfg = CONFIG if which == "chapter" else replace(CONFIG, **small)
    model = load_model(verbose=False)
    start = time.perf_counter()
    _, metrics = train_transcoders(model, cfg, progress=False)
    seconds = time.perf_counter() - start
    ve = [m["variance_explained"] for m in metrics.values()]
    dead = [m["dead_fraction"] for m in metrics.values()]
    print(json.dumps({"config": which, "layers": f"{cfg.layers[0]}-{cfg.layers[-1]}", "d_sae": cfg.d_sae, "k": cfg.k,
                      "steps_per_layer": cfg.steps, "train_seconds": round(seconds), "variance_explained_min": min(ve),
                      "variance_explained_max": max(ve), "dead_fraction_max": max(dead)}))


if __name__ == "__main__":
    main(sys.argv[1])
