"""Chapter 00's reference implementations — the one text of each exercise's solution.

`make release` copies each function (signature, docstring, body) into its solution cell of
`solutions/00_transformerlens_warmup.ipynb`; the learner's notebook gets the signature, the docstring
and a stub. The checks (`utils/chapter00.py`) compare a learner's function with these on fixed cases.
A reference uses only its arguments and the names the notebook's setup cell imports.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer


def single_token_names(model: HookedTransformer, names: list[str]) -> list[str]:
    """Names that are exactly one token when preceded by a space, e.g. " Mary".

    Args:
        model: a HookedTransformer (its tokenizer is what matters).
        names: candidate names without a leading space.
    Returns:
        The single-token names, in the order given.
    """
    return [name for name in names if len(model.to_tokens(" " + name, prepend_bos=False)[0]) == 1]


def residual_norms(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "n_layers_plus_1 pos"]:
    """Mean (over the batch) L2 norm of the residual stream at each layer boundary and position.

    Row l < n_layers is blocks.{l}.hook_resid_pre; the last row is the final block's hook_resid_post.
    """
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: "resid" in name)
    resid = torch.stack(
        [cache["resid_pre", layer] for layer in range(model.cfg.n_layers)] + [cache["resid_post", model.cfg.n_layers - 1]]
    )
    return resid.norm(dim=-1).mean(dim=1)


def attention_pattern(
    q: Float[Tensor, "q_pos n_heads d_head"], k: Float[Tensor, "k_pos n_kv_heads d_head"]
) -> Float[Tensor, "n_heads q_pos k_pos"]:
    """Causal softmax attention pattern; query head h reads key head h // (n_heads // n_kv_heads)."""
    n_heads, n_kv_heads, d_head = q.shape[1], k.shape[1], q.shape[-1]
    k = k.repeat_interleave(n_heads // n_kv_heads, dim=1)
    scores = einops.einsum(q, k, "q_pos head d, k_pos head d -> head q_pos k_pos") / d_head**0.5
    future = torch.triu(torch.ones(scores.shape[-2:], dtype=torch.bool), diagonal=1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


def logit_lens(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, " n_layers_plus_1"]:
    """Mean log-prob of the true next token, read out at each layer boundary with ln_final + unembed."""
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: "resid" in name)
    resid = cache.accumulated_resid()  # [n_layers + 1, batch, pos, d_model]
    log_probs = model.unembed(model.ln_final(resid)).log_softmax(dim=-1)
    next_tokens = einops.repeat(tokens[:, 1:], "batch pos -> layer batch pos 1", layer=resid.shape[0])
    return log_probs[:, :, :-1].gather(-1, next_tokens)[..., 0].mean(dim=(1, 2))


def previous_token_scores(patterns: Float[Tensor, "layer head q_pos k_pos"]) -> Float[Tensor, "layer head"]:
    """Mean attention from position i to position i - 1, over i = 1 .. q_pos - 1."""
    return patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1)


def induction_scores(patterns: Float[Tensor, "layer head q_pos k_pos"], seq_len: int) -> Float[Tensor, "layer head"]:
    """Mean attention from position T + i to position i + 1 (i = 1..T) on [BOS, r, r] with T = seq_len."""
    return patterns.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., -seq_len:].mean(dim=-1)


def ablated_loss(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], layer: int, head: int) -> float:
    """Mean next-token loss with head `layer.head`'s output zeroed at blocks.{layer}.attn.hook_z."""
    def zero_head(z: Float[Tensor, "batch pos head d_head"], hook) -> Float[Tensor, "batch pos head d_head"]:
        z[:, :, head] = 0.0
        return z

    loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)])
    return loss.item()
