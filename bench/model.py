"""The language model's cost: import and load time, forward throughput beside a matmul peak."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import torch

from bench.measure import GB, PeakMemory, children
from utils.paths import ROOT


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
