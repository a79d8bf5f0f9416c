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
from transformer_lens import FactoredMatrix, HookedTransformer


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


def full_ov_circuit(model: HookedTransformer, layer: int, head: int) -> FactoredMatrix:
    """Head `layer.head`'s full OV circuit W_E W_V W_O W_U, [d_vocab, d_vocab], as a FactoredMatrix.

    Row t is what the head adds to the logits, through the direct path, when it attends to token t.
    Never form the product: keep it factored (its inner dimension is d_head).
    """
    return model.W_E @ model.blocks[layer].attn.OV[head] @ model.W_U


def copying_score(circuit: FactoredMatrix) -> float:
    """Sum of the circuit's eigenvalues divided by the sum of their absolute values, as a float.

    1 when every non-zero eigenvalue is positive (the circuit maps tokens to themselves), -1 when
    every one is negative, near 0 for a random matrix.
    """
    eigenvalues = circuit.eigenvalues  # of B @ A (mdim x mdim): the non-zero eigenvalues of A @ B
    return (eigenvalues.sum().real / eigenvalues.abs().sum()).item()


def positional_scores(
    model: HookedTransformer, layer: int, head: int, resid: Float[Tensor, " d_model"], max_offset: int
) -> Float[Tensor, " n_offsets"]:
    """Pre-softmax score of head `layer.head` between a query and a key made from the same residual
    vector `resid`, for offsets d = 0 .. max_offset (query position minus key position).

    Both go through the layer's ln1 and the head's W_Q / W_K (its key head is shared, grouped-query),
    are rotated by the head's rotary embedding at their own positions, dotted, and divided by
    sqrt(d_head), as in the model. Entry d is the score of a key d positions before the query.
    """
    attn = model.blocks[layer].attn
    x = model.blocks[layer].ln1(resid)
    q = x @ attn.W_Q[head] + attn.b_Q[head]
    k = x @ attn.W_K[head] + attn.b_K[head]  # attn.W_K repeats each key head for the query heads that share it
    positions = max_offset + 1
    rot_q = attn.apply_rotary(einops.repeat(q, "d -> 1 pos 1 d", pos=positions))[0, -1, 0]  # query at max_offset
    rot_k = attn.apply_rotary(einops.repeat(k, "d -> 1 pos 1 d", pos=positions))[0, :, 0]  # keys at 0 .. max_offset
    scores = rot_k @ rot_q / attn.attn_scale
    return scores.flip(0)  # entry d: the key at position max_offset - d


def composition_scores(model: HookedTransformer, layer1: int, head1: int, layer2: int, head2: int) -> dict[str, float]:
    """Q-, K- and V-composition of the earlier head layer1.head1 into the later head layer2.head2.

    Each is ||W_OV W||_F / (||W_OV||_F ||W||_F) with W_OV the earlier head's OV circuit and W the later
    head's QK circuit ("Q"), its transpose ("K") or its OV circuit ("V"), as FactoredMatrix objects
    (TransformerLens puts the vector on the left (a row vector, x @ W), so the earlier head's matrix comes first).
    """
    ov = model.blocks[layer1].attn.OV[head1]
    later = model.blocks[layer2].attn

    def score(w: FactoredMatrix) -> float:
        return ((ov @ w).norm() / (ov.norm() * w.norm())).item()

    return {"Q": score(later.QK[head2]), "K": score(later.QK[head2].T), "V": score(later.OV[head2])}


def ablated_loss(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], layer: int, head: int) -> float:
    """Mean next-token loss with head `layer.head`'s output zeroed at blocks.{layer}.attn.hook_z."""
    def zero_head(z: Float[Tensor, "batch pos head d_head"], hook) -> Float[Tensor, "batch pos head d_head"]:
        z[:, :, head] = 0.0
        return z

    loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)])
    return loss.item()
