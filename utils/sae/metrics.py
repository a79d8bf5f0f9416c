"""How good an SAE is: L0, variance explained, dead and dense latents, and the CE loss with it spliced in."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.patching import after_bos
from utils.references.chapter02 import firing_stats, variance_explained
from utils.sae.base import Params
from utils.sae.model import run_sae


def sae_metrics(
    params: Params, activations: Float[Tensor, "n d_in"], k: int | None = None, batch_size: int = 4096
) -> dict[str, float | Tensor]:
    """L0, explained variance, dead and dense fractions and per-latent firing frequency on ``activations``
    (chapter 02's `firing_stats` and `variance_explained` over all of them; the SAE runs in batches)."""
    x = activations.float()
    with torch.no_grad():
        acts, x_hat = (torch.cat(parts) for parts in zip(*(run_sae(params, chunk, k) for chunk in x.split(batch_size))))
    return {**firing_stats(acts), "variance_explained": variance_explained(x, x_hat)}


def ce_losses(
    model: HookedTransformer, tokens: Int[Tensor, "seq pos"], hook_name: str, params: Params, k: int | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """Next-token CE loss: clean, with the SAE's reconstruction spliced in at ``hook_name`` (every
    position but the BOS), and with that activation zero-ablated; and the CE-loss recovered."""
    return ce_losses_of(model, tokens, hook_name, lambda resid: run_sae(params, resid, k)[1], batch_size)


def ce_losses_of(
    model: HookedTransformer, tokens: Int[Tensor, "seq pos"], hook_name: str,
    reconstruct: Callable[[Float[Tensor, "... d_in"]], Float[Tensor, "... d_in"]], batch_size: int = 8,
) -> dict[str, float]:
    """`ce_losses` for any reconstruction of the activation (the benchmark scores SAELens's SAE with it)."""
    splice = after_bos(reconstruct)
    zero = after_bos(torch.zeros_like)
    totals = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    with torch.no_grad():
        for start in tqdm(range(0, len(tokens), batch_size), desc="CE loss: clean, SAE, zero-ablated", mininterval=1.0):
            batch = tokens[start : start + batch_size]
            weight = len(batch) / len(tokens)
            totals["clean"] += weight * model(batch, return_type="loss").item()
            totals["sae"] += weight * model.run_with_hooks(batch, return_type="loss", fwd_hooks=[(hook_name, splice)]).item()
            totals["zero"] += weight * model.run_with_hooks(batch, return_type="loss", fwd_hooks=[(hook_name, zero)]).item()
    totals["ce_recovered"] = (totals["zero"] - totals["sae"]) / (totals["zero"] - totals["clean"])
    return totals
