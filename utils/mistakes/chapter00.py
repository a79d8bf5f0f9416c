"""Plausible wrong implementations of chapter 00's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``.
"""

import einops
import torch


def single_token_names__no_leading_space(model, names):
    return [name for name in names if len(model.to_tokens(name, prepend_bos=False)[0]) == 1]


def single_token_names__counts_bos(model, names):
    return [name for name in names if len(model.to_tokens(" " + name)[0]) == 1]


def single_token_names__at_most_two_tokens(model, names):
    return [name for name in names if len(model.to_tokens(" " + name, prepend_bos=False)[0]) <= 2]


def residual_norms__resid_post_only(model, tokens):
    _, cache = model.run_with_cache(tokens)
    return torch.stack([cache["resid_post", layer] for layer in range(model.cfg.n_layers)]).norm(dim=-1).mean(1)


def residual_norms__norm_over_positions(model, tokens):
    _, cache = model.run_with_cache(tokens)
    resid = cache.accumulated_resid()
    return resid.norm(dim=-2).mean(1)[..., : tokens.shape[1]]


def residual_norms__missing_final_layer(model, tokens):
    _, cache = model.run_with_cache(tokens)
    return torch.stack([cache["resid_pre", layer] for layer in range(model.cfg.n_layers)]).norm(dim=-1).mean(1)


def _scores(q, k):
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    return einops.einsum(q, k, "q h d, k h d -> h q k")


def _causal_softmax(scores, dim=-1):
    mask = torch.triu(torch.ones(scores.shape[-2:], dtype=torch.bool), 1)
    return scores.masked_fill(mask, float("-inf")).softmax(dim)


def attention_pattern__no_scaling(q, k):
    return _causal_softmax(_scores(q, k))


def attention_pattern__no_causal_mask(q, k):
    return (_scores(q, k) / q.shape[-1] ** 0.5).softmax(-1)


def attention_pattern__kv_heads_tiled(q, k):
    k = k.repeat(1, q.shape[1] // k.shape[1], 1)
    return _causal_softmax(einops.einsum(q, k, "q h d, k h d -> h q k") / q.shape[-1] ** 0.5)


def attention_pattern__scale_by_d_head(q, k):
    return _causal_softmax(_scores(q, k) / q.shape[-1])


def logit_lens__no_final_norm(model, tokens):
    _, cache = model.run_with_cache(tokens)
    resid = cache.accumulated_resid()
    log_probs = model.unembed(resid).log_softmax(-1)
    targets = tokens[:, 1:].expand(resid.shape[0], *tokens[:, 1:].shape)[..., None]
    return log_probs[:, :, :-1].gather(-1, targets)[..., 0].mean((1, 2))


def logit_lens__predicts_current_token(model, tokens):
    _, cache = model.run_with_cache(tokens)
    resid = cache.accumulated_resid()
    log_probs = model.unembed(model.ln_final(resid)).log_softmax(-1)
    targets = tokens.expand(resid.shape[0], *tokens.shape)[..., None]
    return log_probs.gather(-1, targets)[..., 0].mean((1, 2))


def logit_lens__raw_logits(model, tokens):
    _, cache = model.run_with_cache(tokens)
    resid = cache.accumulated_resid()
    logits = model.unembed(model.ln_final(resid))
    targets = tokens[:, 1:].expand(resid.shape[0], *tokens[:, 1:].shape)[..., None]
    return logits[:, :, :-1].gather(-1, targets)[..., 0].mean((1, 2))


def previous_token_scores__main_diagonal(patterns):
    return patterns.diagonal(offset=0, dim1=-2, dim2=-1).mean(-1)


def previous_token_scores__divides_by_all_positions(patterns):
    return patterns.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1) / patterns.shape[-1]


def previous_token_scores__above_diagonal(patterns):
    return patterns.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1)


def induction_scores__attends_to_previous_occurrence(patterns, seq_len):
    return patterns.diagonal(offset=-seq_len, dim1=-2, dim2=-1)[..., -seq_len:].mean(-1)


def induction_scores__whole_diagonal(patterns, seq_len):
    return patterns.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1).mean(-1)


def induction_scores__off_by_two(patterns, seq_len):
    return patterns.diagonal(offset=-(seq_len - 2), dim1=-2, dim2=-1)[..., -seq_len:].mean(-1)


def ablated_loss__whole_layer(model, tokens, layer, head):
    def hook(z, hook):
        z[:] = 0.0
        return z

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]).item()


def ablated_loss__zero_query(model, tokens, layer, head):
    def hook(q, hook):
        q[:, :, head] = 0.0
        return q

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(f"blocks.{layer}.attn.hook_q", hook)]).item()


def ablated_loss__ablates_position(model, tokens, layer, head):
    def hook(z, hook):
        z[:, head] = 0.0
        return z

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]).item()


def ablated_loss__edits_weights_in_place(model, tokens, layer, head):
    model.blocks[layer].attn.W_O[head] = 0.0
    return model(tokens, return_type="loss").item()
