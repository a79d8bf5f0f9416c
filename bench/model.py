"""The language model's cost: import and load time, forward throughput beside a matmul peak.

Both are medians of several repeats with their spread, measured in one process per OpenMP wait policy:
``OMP_WAIT_POLICY=PASSIVE`` (the grader, the tests and the benchmark: several torch processes side by
side) and OpenMP's default (a learner's notebook). Run alone: ``python -m bench.model``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import torch

from bench.measure import GB, PeakMemory, children
from utils.paths import ROOT


def _median_and_spread(seconds: list[float]) -> tuple[float, float, float]:
    ordered = sorted(seconds)
    return ordered[len(ordered) // 2], ordered[0], ordered[-1]


class MatmulPeak:
    """Achieved FLOP/s of a square float32 matmul, sampled as often as the measurement it is compared with
    (`sample()` between two forward passes), so both see the same machine: the CPU's speed drifts on
    shared machines, and a peak measured once, before, made fractions above 1 possible."""

    def __init__(self, size: int = 2048):
        self.a, self.b = torch.randn(size, size), torch.randn(size, size)
        self.flops, self.seconds = 2 * size**3, []
        self.a @ self.b  # warm-up

    def sample(self, repeats: int = 2) -> None:
        for _ in range(repeats):
            start = time.perf_counter()
            self.a @ self.b
            self.seconds.append(time.perf_counter() - start)

    def median_and_spread(self) -> tuple[float, float, float]:
        """FLOP/s: median, lowest, highest."""
        median, fastest, slowest = _median_and_spread(self.seconds)
        return self.flops / median, self.flops / slowest, self.flops / fastest


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


def forward_rows(batches: list[tuple[int, int]]) -> dict[str, Any]:
    """In this process: the forward pass at each (batch, repeats) pair — batch x 128 tokens, the median of
    ``repeats`` runs with its spread — beside the matmul peak sampled between those runs (`MatmulPeak`)."""
    from utils.models import load_model

    model = load_model(verbose=False)
    peak = MatmulPeak()
    seq_len = 128
    measured = []
    for batch, repeats in batches:
        tokens = torch.randint(1000, 20000, (batch, seq_len), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            model(tokens)  # warm-up
            seconds = []
            for _ in range(repeats):
                peak.sample()
                start = time.perf_counter()
                model(tokens)
                seconds.append(time.perf_counter() - start)
        measured.append((batch, repeats, seconds))
    peak_flops, peak_low, peak_high = peak.median_and_spread()
    rows = []
    for batch, repeats, seconds in measured:
        median, fastest, slowest = _median_and_spread(seconds)
        flops = forward_flops_per_token(model, seq_len) * batch * seq_len
        rows.append(
            {
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
                "batch": batch,
                "seq_len": seq_len,
                "repeats": repeats,
                "tokens_per_s": round(batch * seq_len / median),
                "tokens_per_s_spread": f"{batch * seq_len / slowest:.0f}-{batch * seq_len / fastest:.0f}",
                "gflop_per_s": round(flops / median / 1e9, 1),
                "matmul_peak_gflop_per_s": round(peak_flops / 1e9),
                "fraction_of_matmul_peak": round(flops / median / peak_flops, 2),
            }
        )
    return {"matmul_peak_spread": f"{peak_low / 1e9:.0f}-{peak_high / 1e9:.0f}", "rows": rows}


def _forward_in_subprocess(wait_policy: str | None, batches: list[tuple[int, int]]) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    code = f"import json; from bench.model import forward_rows; print(json.dumps(forward_rows({batches!r})))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_model(quick: bool) -> dict[str, Any]:
    """Import and load time, then the forward pass beside the matmul peak, once with
    ``OMP_WAIT_POLICY=PASSIVE`` (how the grader, the tests and the benchmark run: side by side) and once
    with OpenMP's default (how a learner's notebook runs), each in its own process."""
    code = (
        "import time; t = time.perf_counter(); from utils.models import load_model; i = time.perf_counter(); "
        "load_model(verbose=False); print(i - t, time.perf_counter() - i)"
    )
    with PeakMemory(children) as memory:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    import_seconds, load_seconds = map(float, run.stdout.strip().splitlines()[-1].split())
    # (batch, repeats): the targets' batch sizes 7 times; batch 32, 4,096 tokens, is as steady with 3 (10 s each)
    batches = [(1, 1), (8, 1)] if quick else [(1, 7), (8, 7), (32, 3)]
    rows, spreads = [], {}
    for policy in ["PASSIVE", None]:
        measured = _forward_in_subprocess(policy, batches)
        spreads[policy or "(default)"] = measured["matmul_peak_spread"]
        for row in measured["rows"]:
            print(f"  {row}", flush=True)
        rows += measured["rows"]
    return {
        "import_seconds": round(import_seconds, 2),  # torch, transformer_lens
        "load_seconds": round(load_seconds, 2),  # the cached, converted weights
        "load_process_peak_gb": round(memory.peak / GB, 2),
        "matmul_peak_spread_passive": spreads["PASSIVE"],
        "matmul_peak_spread_default": spreads["(default)"],
        "forward": rows,
    }


if __name__ == "__main__":
    print(json.dumps(forward_rows([(1, 5), (8, 5)]), indent=1))
