"""Chapter 02's language-model SAE, trained once per machine and then read from disk (`pretrained_sae`)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

from transformer_lens import HookedTransformer

from utils.paths import SAE_HOOK, cache_dir, computing
from utils.sae.base import Params, SAEConfig
from utils.sae.metrics import sae_metrics
from utils.sae.saelens import load_sae, save_sae
from utils.sae.training import train_sae

HELD_OUT = 8192  # the last activations (or an eighth of them, if fewer), never trained on


def recipe(d_sae: int = 1536, k: int = 32, steps: int = 600) -> SAEConfig:
    """Chapter 02's recipe for its SmolLM2 SAE (batch 512, lr 2e-3, dead window 200, seed 0)."""
    return SAEConfig(d_sae=d_sae, architecture="topk", k=k, steps=steps, batch_size=512, lr=2e-3, dead_window=200)


def pretrained_sae(
    model: HookedTransformer, hook_name: str = SAE_HOOK, d_sae: int = 1536, k: int = 32,
    n_seqs: int = 1200, steps: int = 600, verbose: bool = True,
) -> tuple[Params, dict]:
    """A TopK SAE on ``hook_name``, trained once with chapter 02's `recipe` and then read from disk.

    Trained on the first ``n_seqs`` corpus sequences of 128 tokens minus the last `HELD_OUT`
    activations. Saved in SAELens's format under ``cache_dir()/saes`` with its held-out metrics in
    ``cfg["metadata"]``, so later chapters load in a second what chapter 02 trains. Returns ``(params, cfg)``.
    """
    from utils.data import cached_activations

    key = json.dumps([model.cfg.model_name, hook_name, d_sae, k, n_seqs, steps])
    folder = cache_dir() / "saes" / f"{hook_name}-topk{k}-{d_sae}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    with computing(folder):  # a second process waits for the first one's SAE instead of training it again
        if (folder / "cfg.json").exists():
            return load_sae(folder)
        start = time.perf_counter()
        activations = cached_activations(model, hook_name, seq_len=128, n_seqs=n_seqs, verbose=verbose)
        held = min(HELD_OUT, len(activations) // 8)
        train, held_out = activations[:-held], activations[-held:]
        params, _ = train_sae(train, recipe(d_sae, k, steps), desc=f"SAE on {hook_name}", progress=verbose)
        metrics = sae_metrics(params, held_out, k)
        metadata = {"model_name": model.cfg.model_name, "hook_name": hook_name, "context_size": 128, "prepend_bos": True,
                    **{name: round(float(metrics[name]), 4) for name in ["l0", "variance_explained", "dead_fraction"]}}
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))  # written whole, then renamed
        save_sae(params, tmp, k=k, metadata=metadata)
        try:
            tmp.rename(folder)
        except OSError:  # made meanwhile where no lock works: keep that one (the same recipe and seed)
            shutil.rmtree(tmp)
    if verbose:
        print(f"Trained and cached an SAE on {hook_name} in {time.perf_counter() - start:.0f} s: {folder}")
    return load_sae(folder)
