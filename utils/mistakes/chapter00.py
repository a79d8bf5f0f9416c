"""Plausible wrong implementations of chapter 00's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``; each docstring completes "This is what you get when …",
which a learner whose output matches the mistake reads in the check's message.
"""

import einops
import torch
from transformer_lens import FactoredMatrix


def single_token_names__no_leading_space(model, names):
    """each name is tokenized without the space before it, as at the very start of a text, not as it appears mid-sentence."""
    return [name for name in names if len(model.to_tokens(name, prepend_bos=False)[0]) == 1]


def single_token_names__counts_bos(model, names):
    """the BOS token that `to_tokens` prepends is counted (no `prepend_bos=False`), so no name is ever a single token."""
    return [name for name in names if len(model.to_tokens(" " + name)[0]) == 1]


def single_token_names__at_most_two_tokens(model, names):
    """names of two tokens are kept too (`<= 2` instead of `== 1`)."""
    return [name for name in names if len(model.to_tokens(" " + name, prepend_bos=False)[0]) <= 2]


def residual_norms__resid_post_only(model, tokens):
    """only each block's resid_post is used: the first row (the embeddings, resid_pre of layer 0) is missing."""
    _, cache = model.run_with_cache(tokens)
    return torch.stack([cache["resid_post", layer] for layer in range(model.cfg.n_layers)]).norm(dim=-1).mean(1)


def residual_norms__norm_over_positions(model, tokens):
    """the norm is taken over the positions instead of over d_model (the last axis)."""
    _, cache = model.run_with_cache(tokens)
    resid = cache.accumulated_resid()
    return resid.norm(dim=-2).mean(1)[..., : tokens.shape[1]]


def residual_norms__missing_final_layer(model, tokens):
    """the last row (the final block's resid_post) is left out: only the n_layers resid_pre rows are returned."""
    _, cache = model.run_with_cache(tokens)
    return torch.stack([cache["resid_pre", layer] for layer in range(model.cfg.n_layers)]).norm(dim=-1).mean(1)


def _scores(q, k):
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    return einops.einsum(q, k, "q h d, k h d -> h q k")


def _causal_softmax(scores, dim=-1):
    mask = torch.triu(torch.ones(scores.shape[-2:], dtype=torch.bool), 1)
    return scores.masked_fill(mask, float("-inf")).softmax(dim)


def attention_pattern__no_scaling(q, k):
    """the scores are not divided by √d_head."""
    return _causal_softmax(_scores(q, k))


def attention_pattern__no_causal_mask(q, k):
    """future keys are not masked, so each query also attends to the positions after it."""
    return (_scores(q, k) / q.shape[-1] ** 0.5).softmax(-1)


def attention_pattern__kv_heads_tiled(q, k):
    """the key heads are tiled (`repeat`), not repeated in place (`repeat_interleave`): head h reads key head h mod n_kv_heads."""
    k = k.repeat(1, q.shape[1] // k.shape[1], 1)
    return _causal_softmax(einops.einsum(q, k, "q h d, k h d -> h q k") / q.shape[-1] ** 0.5)


def attention_pattern__scale_by_d_head(q, k):
    """the scores are divided by d_head instead of √d_head."""
    return _causal_softmax(_scores(q, k) / q.shape[-1])


def logit_lens__no_final_norm(model, tokens):
    """the residual stream is unembedded without the final norm (`model.ln_final`)."""
    _, cache = model.run_with_cache(tokens)
    resid = cache.accumulated_resid()
    log_probs = model.unembed(resid).log_softmax(-1)
    targets = tokens[:, 1:].expand(resid.shape[0], *tokens[:, 1:].shape)[..., None]
    return log_probs[:, :, :-1].gather(-1, targets)[..., 0].mean((1, 2))


def logit_lens__predicts_current_token(model, tokens):
    """each position is scored on its own token instead of the next one."""
    _, cache = model.run_with_cache(tokens)
    resid = cache.accumulated_resid()
    log_probs = model.unembed(model.ln_final(resid)).log_softmax(-1)
    targets = tokens.expand(resid.shape[0], *tokens.shape)[..., None]
    return log_probs.gather(-1, targets)[..., 0].mean((1, 2))


def logit_lens__raw_logits(model, tokens):
    """the raw logits of the next token are averaged instead of its log-probabilities (no log-softmax)."""
    _, cache = model.run_with_cache(tokens)
    resid = cache.accumulated_resid()
    logits = model.unembed(model.ln_final(resid))
    targets = tokens[:, 1:].expand(resid.shape[0], *tokens[:, 1:].shape)[..., None]
    return logits[:, :, :-1].gather(-1, targets)[..., 0].mean((1, 2))


def previous_token_scores__main_diagonal(patterns):
    """the main diagonal (each token's attention to itself) is averaged instead of the one just below it."""
    return patterns.diagonal(offset=0, dim1=-2, dim2=-1).mean(-1)


def previous_token_scores__divides_by_all_positions(patterns):
    """the sum is divided by q_pos instead of by the q_pos − 1 queries that have a previous token."""
    return patterns.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1) / patterns.shape[-1]


def previous_token_scores__above_diagonal(patterns):
    """the diagonal above the main one is read: attention to the next token, always 0 in a causal pattern."""
    return patterns.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1)


def induction_scores__attends_to_previous_occurrence(patterns, seq_len):
    """the second r_i is scored on its attention to the first r_i (position i), not to the token after it (i + 1)."""
    return patterns.diagonal(offset=-seq_len, dim1=-2, dim2=-1)[..., -seq_len:].mean(-1)


def induction_scores__whole_diagonal(patterns, seq_len):
    """the whole diagonal is averaged, two queries of the first copy included, not only the T queries of the second copy."""
    return patterns.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1).mean(-1)


def induction_scores__off_by_two(patterns, seq_len):
    """the key is one position too far: the second r_i is scored on its attention to position i + 2 instead of i + 1."""
    return patterns.diagonal(offset=-(seq_len - 2), dim1=-2, dim2=-1)[..., -seq_len:].mean(-1)


def full_ov_circuit__qk_circuit(model, layer, head):
    """the QK circuit W_E W_QK W_E^T (which tokens the head attends to) is returned instead of the OV circuit (what it
    writes to the logits)."""
    return model.W_E @ model.blocks[layer].attn.QK[head] @ model.W_E.T


def full_ov_circuit__tied_unembedding(model, layer, head):
    """the unembedding is taken to be W_E^T: SmolLM2 ties its embeddings, but the final RMSNorm's scale is folded into
    `model.W_U`, so W_U is not W_E^T."""
    return model.W_E @ model.blocks[layer].attn.OV[head] @ model.W_E.T


def full_ov_circuit__ungrouped_value_head(model, layer, head):
    """the unexpanded value weights `attn._W_V` (one per key/value head) are indexed with the query head's number, so
    query head h reads value head h instead of h // 3."""
    attn = model.blocks[layer].attn
    return model.W_E @ FactoredMatrix(attn._W_V[head], attn.W_O[head]) @ model.W_U


def copying_score__singular_values(circuit):
    """singular values are used instead of eigenvalues: they are never negative, so every matrix scores 1."""
    s = circuit.S
    return (s.sum() / s.abs().sum()).item()


def copying_score__real_parts_in_denominator(circuit):
    """the denominator sums the absolute values of the eigenvalues' real parts instead of their moduli |λ|, which
    leaves out their imaginary parts."""
    e = circuit.eigenvalues
    return (e.real.sum() / e.real.abs().sum()).item()


def copying_score__mean_eigenvalue(circuit):
    """the sum of the eigenvalues is divided by their number instead of by the sum of their absolute values, so the
    score depends on the matrix's scale."""
    e = circuit.eigenvalues
    return (e.sum().real / e.numel()).item()


def _positional(model, layer, head, resid, max_offset, norm=True, rotate_q=True, rotate_k=True, scale=True, flip=True):
    attn = model.blocks[layer].attn
    x = model.blocks[layer].ln1(resid) if norm else resid
    n = max_offset + 1
    q = (x @ attn.W_Q[head]).expand(1, n, 1, -1).clone()
    k = (x @ attn.W_K[head]).expand(1, n, 1, -1).clone()
    q = attn.apply_rotary(q) if rotate_q else q
    k = attn.apply_rotary(k) if rotate_k else k
    scores = k[0, :, 0] @ q[0, -1, 0] / (attn.attn_scale if scale else 1.0)
    return scores.flip(0) if flip else scores


def positional_scores__no_rotary(model, layer, head, resid, max_offset):
    """the rotary embedding is not applied, so the score is the same at every offset."""
    return _positional(model, layer, head, resid, max_offset, rotate_q=False, rotate_k=False)


def positional_scores__keys_not_rotated(model, layer, head, resid, max_offset):
    """only the query is rotated: the keys keep their unrotated value, so the scores depend on where the query is, not
    on the offset."""
    return _positional(model, layer, head, resid, max_offset, rotate_k=False)


def positional_scores__by_key_position(model, layer, head, resid, max_offset):
    """the scores are in key-position order (entry j is the key at position j) instead of offset order (entry d is the
    key d positions before the query)."""
    return _positional(model, layer, head, resid, max_offset, flip=False)


def positional_scores__no_norm(model, layer, head, resid, max_offset):
    """the residual vector goes into W_Q and W_K without the layer's `ln1`: TransformerLens folded the norm's scale
    into the weights, but the division by the root mean square is still the norm's job."""
    return _positional(model, layer, head, resid, max_offset, norm=False)


def positional_scores__no_scaling(model, layer, head, resid, max_offset):
    """the dot products are not divided by √d_head (`attn.attn_scale`)."""
    return _positional(model, layer, head, resid, max_offset, scale=False)


def _composition(model, layer1, head1, layer2, head2, earlier_first=True, normalise=True, swap_qk=False):
    ov = model.blocks[layer1].attn.OV[head1]
    later = model.blocks[layer2].attn

    def score(w):
        product = ov @ w if earlier_first else w @ ov
        return (product.norm() / ((ov.norm() * w.norm()) if normalise else 1.0)).item()

    qk = later.QK[head2]
    q, k = (qk.T, qk) if swap_qk else (qk, qk.T)
    return {"Q": score(q), "K": score(k), "V": score(later.OV[head2])}


def composition_scores__q_and_k_swapped(model, layer1, head1, layer2, head2):
    """K-composition uses the later head's QK circuit as it is (its query side) and Q-composition its transpose: the
    earlier head's output reaches the keys through the second index of W_QK."""
    return _composition(model, layer1, head1, layer2, head2, swap_qk=True)


def composition_scores__later_head_first(model, layer1, head1, layer2, head2):
    """the later head's matrix is multiplied first (W · W_OV instead of W_OV · W): with TransformerLens's row vectors
    the earlier head's output comes first."""
    return _composition(model, layer1, head1, layer2, head2, earlier_first=False)


def composition_scores__not_normalised(model, layer1, head1, layer2, head2):
    """the norm of the product is not divided by the norms of the two matrices, so the score measures their sizes as
    much as their alignment."""
    return _composition(model, layer1, head1, layer2, head2, normalise=False)


def ablated_loss__whole_layer(model, tokens, layer, head):
    """every head of the layer is zeroed, not only the one asked for."""
    def hook(z, hook):
        z[:] = 0.0
        return z

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]).item()


def ablated_loss__zero_query(model, tokens, layer, head):
    """the head's queries (hook_q) are zeroed instead of its output: it then attends evenly to every earlier position."""
    def hook(q, hook):
        q[:, :, head] = 0.0
        return q

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(f"blocks.{layer}.attn.hook_q", hook)]).item()


def ablated_loss__ablates_position(model, tokens, layer, head):
    """position `head` is zeroed in every head (`z[:, head]` indexes positions; heads are the third axis of hook_z)."""
    def hook(z, hook):
        z[:, head] = 0.0
        return z

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]).item()


def ablated_loss__edits_weights_in_place(model, tokens, layer, head):
    """the head's W_O is zeroed in the model's weights instead of its output in a hook, so the model stays changed."""
    model.blocks[layer].attn.W_O[head] = 0.0
    return model(tokens, return_type="loss").item()
