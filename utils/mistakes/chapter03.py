"""Plausible wrong implementations of chapter 03's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``; each docstring completes "This is what you get when …",
which a learner whose output matches the mistake reads in the check's message.
"""

import einops
import torch

from utils.references import chapter03 as ref
from utils.references.chapter03 import logit_diff_directions

# --- the dataset ---------------------------------------------------------------------------------


def ioi_prompt_pair__order_ignored(template, io, s, third, order):
    """the order is ignored: `[A]` is always IO and `[B]` always S, so the BABA prompts come out as ABBA."""
    first = template.replace("[A]", io).replace("[B]", s)
    return first.replace("[S]", s), first.replace("[S]", third)


def ioi_prompt_pair__corrupts_the_first_clause(template, io, s, third, order):
    """the corruption replaces IO in the first clause instead of the second mention of S, so S is still duplicated."""
    a, b = (io, s) if order == "ABBA" else (s, io)
    clean = template.replace("[A]", a).replace("[B]", b).replace("[S]", s)
    return clean, clean.replace(f" {io} ", f" {third} ", 1)


def ioi_prompt_pair__second_mention_is_io(template, io, s, third, order):
    """the clean prompt's second clause repeats IO instead of S, so its answer would be S."""
    a, b = (io, s) if order == "ABBA" else (s, io)
    first = template.replace("[A]", a).replace("[B]", b)
    return first.replace("[S]", io), first.replace("[S]", third)


# --- the metric ---------------------------------------------------------------------------------


def logit_diff__wrong_sign(logits, io_tokens, s_tokens):
    """the difference is taken the wrong way round: logit(S) − logit(IO)."""
    return -ref.logit_diff(logits, io_tokens, s_tokens)


def logit_diff__first_position(logits, io_tokens, s_tokens):
    """the logits are read at the first position instead of the last."""
    return ref.logit_diff(logits[:, :1], io_tokens, s_tokens)


def logit_diff__probabilities(logits, io_tokens, s_tokens):
    """the difference is taken between probabilities (after a softmax) instead of logits."""
    return ref.logit_diff(logits.softmax(-1), io_tokens, s_tokens)


def logit_diff_directions__wrong_sign(model, io_tokens, s_tokens):
    """the direction is taken the wrong way round: `W_U[:, S] − W_U[:, IO]`."""
    return (model.W_U[:, s_tokens] - model.W_U[:, io_tokens]).T


def logit_diff_directions__averaged_over_prompts(model, io_tokens, s_tokens):
    """the prompts' directions are averaged into one vector instead of one row per prompt."""
    return (model.W_U[:, io_tokens] - model.W_U[:, s_tokens]).T.mean(0)


def logit_diff_directions__io_only(model, io_tokens, s_tokens):
    """the direction is IO's column of `W_U` alone, without subtracting S's."""
    return model.W_U[:, io_tokens].T


# --- direct logit attribution --------------------------------------------------------------------


def _heads_at_end(model, tokens, pos=-1):
    _, cache = model.run_with_cache(tokens)
    z = torch.stack([cache["z", layer][:, pos] for layer in range(model.cfg.n_layers)])
    return cache, einops.einsum(z, model.W_O, "l b h dh, l h dh d -> l h b d").flatten(0, 1)


def head_dla__final_norm_forgotten(model, tokens, io_tokens, s_tokens):
    """the heads' outputs are projected without dividing by the final norm's scale."""
    _, heads = _heads_at_end(model, tokens)
    dla = einops.einsum(heads, logit_diff_directions(model, io_tokens, s_tokens), "c b d, b d -> c") / len(tokens)
    return dla.reshape(model.cfg.n_layers, model.cfg.n_heads)


def head_dla__each_head_normalised(model, tokens, io_tokens, s_tokens):
    """each head's output goes through the final norm on its own instead of being divided by the whole stream's scale."""
    _, heads = _heads_at_end(model, tokens)
    heads = model.ln_final(heads)  # normalises every head's output by its own size
    dla = einops.einsum(heads, logit_diff_directions(model, io_tokens, s_tokens), "c b d, b d -> c") / len(tokens)
    return dla.reshape(model.cfg.n_layers, model.cfg.n_heads)


def component_dla__final_norm_forgotten(model, tokens, io_tokens, s_tokens):
    """the components are projected without dividing by the final norm's scale."""
    _, cache = model.run_with_cache(tokens)
    parts = cache.decompose_resid(layer=-1, pos_slice=-1)
    return einops.einsum(parts, logit_diff_directions(model, io_tokens, s_tokens), "c b d, b d -> c") / len(tokens)


def component_dla__norm_recomputed_per_component(model, tokens, io_tokens, s_tokens):
    """the final norm's scale is recomputed from each component alone (`recompute_ln=True`), not taken from the whole stream."""
    _, cache = model.run_with_cache(tokens)
    parts = cache.apply_ln_to_stack(cache.decompose_resid(layer=-1, pos_slice=-1), layer=-1, pos_slice=-1, recompute_ln=True)
    return einops.einsum(parts, logit_diff_directions(model, io_tokens, s_tokens), "c b d, b d -> c") / len(tokens)


def component_dla__wrong_sign(model, tokens, io_tokens, s_tokens):
    """every contribution has the wrong sign, as with a direction of S minus IO."""
    return -ref.component_dla(model, tokens, io_tokens, s_tokens)


# --- activation patching -------------------------------------------------------------------------


def _ld(model, tokens, io_tokens, s_tokens, hooks=()):
    return ref.logit_diff(model.run_with_hooks(tokens, fwd_hooks=list(hooks)), io_tokens, s_tokens).mean()


def _patch_residual(model, clean, corrupt, io_tokens, s_tokens, layers, shift=0, normalise=True):
    """Denoising, batched over positions; ``shift`` patches the clean value of position p + shift."""
    batch, n_pos = clean.shape
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    ld_clean, ld_corrupt = _ld(model, clean, io_tokens, s_tokens), _ld(model, corrupt, io_tokens, s_tokens)
    out = torch.zeros(len(layers), n_pos)
    for row, layer in enumerate(layers):
        resid = corrupt_cache["resid_pre", layer].repeat(n_pos, 1, 1)
        for pos in range(n_pos):
            source = min(pos + shift, n_pos - 1)
            resid[pos * batch : (pos + 1) * batch, source] = clean_cache["resid_pre", layer][:, source]
        logits = ref.final_logits(model, resid, layer)
        out[row] = ref.logit_diff(logits, io_tokens.repeat(n_pos), s_tokens.repeat(n_pos)).reshape(n_pos, batch).mean(-1)
    return (out - ld_corrupt) / (ld_clean - ld_corrupt) if normalise else out


def patch_residual__clean_and_corrupted_swapped(model, clean, corrupt, io_tokens, s_tokens, layers):
    """clean and corrupted are swapped: the corrupted residual stream is patched into the clean run."""
    return ref.patch_residual(model, corrupt, clean, io_tokens, s_tokens, layers)


def patch_residual__next_position_patched(model, clean, corrupt, io_tokens, s_tokens, layers):
    """the row of position p patches the clean value at position p + 1 (an off-by-one in the position)."""
    return _patch_residual(model, clean, corrupt, io_tokens, s_tokens, layers, shift=1)


def patch_residual__not_normalised(model, clean, corrupt, io_tokens, s_tokens, layers):
    """the patched logit difference is returned as it is, not rescaled to 0 = corrupted, 1 = clean."""
    return _patch_residual(model, clean, corrupt, io_tokens, s_tokens, layers, normalise=False)


def _patch_heads(model, clean, corrupt, io_tokens, s_tokens, layers, mode):
    batch, n_heads = clean.shape[0], model.cfg.n_heads
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    ld_clean, ld_corrupt = _ld(model, clean, io_tokens, s_tokens), _ld(model, corrupt, io_tokens, s_tokens)
    out = torch.zeros(len(layers), n_heads)
    for row, layer in enumerate(layers):

        def hook(z, hook, layer=layer):
            z = z.clone()
            for head in range(n_heads):
                rows = slice(head * batch, (head + 1) * batch)
                if mode == "zero":
                    z[rows, :, head] = 0.0
                else:  # "last": only the final position
                    z[rows, -1, head] = clean_cache["z", layer][:, -1, head]
            return z

        with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]):
            logits = ref.final_logits(model, corrupt_cache["resid_pre", layer].repeat(n_heads, 1, 1), layer)
        out[row] = ref.logit_diff(logits, io_tokens.repeat(n_heads), s_tokens.repeat(n_heads)).reshape(n_heads, batch).mean(-1)
    return (out - ld_corrupt) / (ld_clean - ld_corrupt)


def patch_heads__zero_ablation(model, clean, corrupt, io_tokens, s_tokens, layers):
    """the head's output is set to zero instead of to its value in the clean run."""
    return _patch_heads(model, clean, corrupt, io_tokens, s_tokens, layers, "zero")


def patch_heads__final_position_only(model, clean, corrupt, io_tokens, s_tokens, layers):
    """the head's clean output is patched at the last position only, not at every position."""
    return _patch_heads(model, clean, corrupt, io_tokens, s_tokens, layers, "last")


def patch_heads__clean_and_corrupted_swapped(model, clean, corrupt, io_tokens, s_tokens, layers):
    """clean and corrupted are swapped: the head's corrupted output is patched into the clean run."""
    return ref.patch_heads(model, corrupt, clean, io_tokens, s_tokens, layers)


# --- attribution patching ------------------------------------------------------------------------


def attribution_patch__gradient_at_the_clean_run(model, clean, corrupt, io_tokens, s_tokens, act_name):
    """the gradient is taken at the clean run instead of the corrupted one."""
    names = [f"blocks.{layer}.{'attn.hook_z' if act_name == 'z' else 'hook_' + act_name}" for layer in range(model.cfg.n_layers)]
    _, corrupt_cache = model.run_with_cache(corrupt)
    acts = {}

    def keep(act, hook):
        act.retain_grad()
        acts[hook.name] = act

    with torch.enable_grad():
        logits = model.run_with_hooks(
            clean, fwd_hooks=[("hook_embed", lambda x, hook: x.requires_grad_(True))] + [(n, keep) for n in names]
        )
        ld_clean = ref.logit_diff(logits, io_tokens, s_tokens).mean()
        ld_clean.backward()
    ld_corrupt = _ld(model, corrupt, io_tokens, s_tokens)
    scores = [((acts[n].detach() - corrupt_cache[n]) * acts[n].grad).sum(dim=(0, -1)) for n in names]
    return torch.stack(scores) / (ld_clean.detach() - ld_corrupt)


def attribution_patch__corrupted_minus_clean(model, clean, corrupt, io_tokens, s_tokens, act_name):
    """the activation difference is corrupted minus clean, so every estimate has the wrong sign."""
    return -ref.attribution_patch(model, clean, corrupt, io_tokens, s_tokens, act_name)


def attribution_patch__not_normalised(model, clean, corrupt, io_tokens, s_tokens, act_name):
    """the estimates are not divided by LD_clean − LD_corrupt."""
    ld_clean = _ld(model, clean, io_tokens, s_tokens)
    ld_corrupt = _ld(model, corrupt, io_tokens, s_tokens)
    return ref.attribution_patch(model, clean, corrupt, io_tokens, s_tokens, act_name) * (ld_clean - ld_corrupt)


# --- path patching -------------------------------------------------------------------------------


def path_patch_to_logits__clean_norm_scale_kept(model, clean, corrupt, io_tokens, s_tokens):
    """the final norm is not recomputed: the patched stream is divided by the clean run's scale."""
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    ld_clean, ld_corrupt = _ld(model, clean, io_tokens, s_tokens), _ld(model, corrupt, io_tokens, s_tokens)
    z_diff = torch.stack([corrupt_cache["z", n][:, -1] - clean_cache["z", n][:, -1] for n in range(len(model.blocks))])
    delta = einops.einsum(z_diff, model.W_O, "l b h dh, l h dh d -> l h b d")
    resid = (clean_cache[last][:, -1] + delta) / clean_cache["ln_final.hook_scale"][:, -1]  # the clean run's scale
    ld = einops.einsum(resid, logit_diff_directions(model, io_tokens, s_tokens), "l h b d, b d -> l h b").mean(-1)
    return (ld - ld_clean) / (ld_clean - ld_corrupt)


def path_patch_to_logits__clean_and_corrupted_swapped(model, clean, corrupt, io_tokens, s_tokens):
    """clean and corrupted are swapped: the head's clean output is added to the corrupted run's final stream."""
    return ref.path_patch_to_logits(model, corrupt, clean, io_tokens, s_tokens)


def path_patch_to_logits__every_position_summed(model, clean, corrupt, io_tokens, s_tokens):
    """the head's change is summed over every position instead of taken at the last one."""
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    ld_clean, ld_corrupt = _ld(model, clean, io_tokens, s_tokens), _ld(model, corrupt, io_tokens, s_tokens)
    z_diff = torch.stack([(corrupt_cache["z", layer] - clean_cache["z", layer]).sum(1) for layer in range(model.cfg.n_layers)])
    delta = einops.einsum(z_diff, model.W_O, "l b h dh, l h dh d -> l h b d")
    resid = model.ln_final(clean_cache[last][:, -1] + delta)
    ld = einops.einsum(resid, logit_diff_directions(model, io_tokens, s_tokens), "l h b d, b d -> l h b").mean(-1)
    return (ld - ld_clean) / (ld_clean - ld_corrupt)


def _to_queries(model, clean, corrupt, io_tokens, s_tokens, receivers, rotate=True, kv=lambda head, group: head // group):
    """The reference's computation with one step changed."""
    n_heads = model.cfg.n_heads
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    _, cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    ld_clean, ld_corrupt = _ld(model, clean, io_tokens, s_tokens), _ld(model, corrupt, io_tokens, s_tokens)
    first = min(layer for layer, _ in receivers)
    z_diff = torch.stack([corrupt_cache["z", layer] - cache["z", layer] for layer in range(first)])
    delta = einops.einsum(z_diff, model.W_O[:first], "l b p h dh, l h dh d -> l h b p d")
    change = torch.zeros(first, n_heads, clean.shape[0], model.cfg.d_model)
    group = n_heads // model.cfg.n_key_value_heads
    n = first * n_heads
    for layer, head in receivers:
        attn = model.blocks[layer].attn
        q = model.blocks[layer].ln1(cache["resid_pre", layer] + delta) @ attn.W_Q[head] + attn.b_Q[head]
        q = einops.rearrange(q, "l h b p dh -> (l h b) p 1 dh")
        q = (attn.apply_rotary(q) if rotate else q)[:, -1, 0]
        k = cache["rot_k", layer][:, :, kv(head, group)].repeat(n, 1, 1)
        v = cache["v", layer][:, :, kv(head, group)].repeat(n, 1, 1)
        pattern = (einops.einsum(q, k, "n dh, n p dh -> n p") / model.cfg.d_head**0.5).softmax(-1)
        z = einops.einsum(pattern, v, "n p, n p dh -> n dh")
        out = (z - cache["z", layer][:, -1, head].repeat(n, 1)) @ attn.W_O[head]
        change += einops.rearrange(out, "(l h b) d -> l h b d", l=first, h=n_heads)
    resid = model.ln_final(cache[last][:, -1] + change)
    ld = einops.einsum(resid, logit_diff_directions(model, io_tokens, s_tokens), "l h b d, b d -> l h b").mean(-1)
    result = torch.zeros(model.cfg.n_layers, n_heads)
    result[:first] = (ld - ld_clean) / (ld_clean - ld_corrupt)
    return result


def path_patch_to_queries__rotary_forgotten(model, clean, corrupt, io_tokens, s_tokens, receivers):
    """the receivers' new queries are not rotated (rotary embedding forgotten) before they meet the rotated keys."""
    return _to_queries(model, clean, corrupt, io_tokens, s_tokens, receivers, rotate=False)


def path_patch_to_queries__key_heads_tiled(model, clean, corrupt, io_tokens, s_tokens, receivers):
    """query heads are assigned to key/value heads in turn (`head % 3`) instead of in consecutive groups (`head // 3`)."""
    return _to_queries(model, clean, corrupt, io_tokens, s_tokens, receivers, kv=lambda head, group: head % (9 // group))


# --- head classes --------------------------------------------------------------------------------


def copying_scores__first_mlp_skipped(model, name_tokens, k=5, negative=False):
    """the names go straight from the embedding into the heads, skipping block 0's MLP."""
    values = einops.einsum(model.blocks[0].ln1(model.W_E[name_tokens][None])[0], model.W_V, "n d, l h d dh -> l h n dh")
    out = einops.einsum(values, model.W_O, "l h n dh, l h dh d -> l h n d") * (-1 if negative else 1)
    tops = [(model.ln_final(o) @ model.W_U).topk(k, -1).indices for o in out]
    return torch.stack([(top == name_tokens[None, :, None]).any(-1).float().mean(-1) for top in tops])


def copying_scores__negative_ignored(model, name_tokens, k=5, negative=False):
    """`negative` is ignored: the negative copying score is the ordinary one."""
    return ref.copying_scores(model, name_tokens, k, False)


def duplicate_token_scores__induction_offset(patterns, seq_len):
    """the score reads attention to the token after the first copy (the induction target), one position too far."""
    return patterns.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)[..., -seq_len:].mean(-1)


def duplicate_token_scores__previous_token(patterns, seq_len):
    """the score reads attention to the previous token instead of to the first copy, T tokens back."""
    return patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


def duplicate_token_scores__whole_diagonal(patterns, seq_len):
    """the whole diagonal is averaged, including its first entry: the last token of the first copy attending to BOS."""
    return patterns.diagonal(offset=-seq_len, dim1=-2, dim2=-1).mean(-1)


# --- the circuit ---------------------------------------------------------------------------------


def _ablated(model, clean, corrupt, io_tokens, s_tokens, circuit, mean_of):
    _, corrupt_cache = model.run_with_cache(corrupt)
    _, clean_cache = model.run_with_cache(clean)

    def ablate(z, hook):
        keep = circuit[hook.layer()][None, None, :, None]
        return torch.where(keep, z, mean_of(corrupt_cache[hook.name], clean_cache[hook.name]))

    logits = model.run_with_hooks(clean, fwd_hooks=[(lambda name: name.endswith("hook_z"), ablate)])
    return ref.logit_diff(logits, io_tokens, s_tokens).mean().item()


def circuit_logit_diff__mean_over_positions(model, clean, corrupt, io_tokens, s_tokens, circuit):
    """the mean is taken over the positions of each corrupted prompt instead of over the prompts at each position."""
    return _ablated(model, clean, corrupt, io_tokens, s_tokens, circuit, lambda corr, cl: corr.mean(1, keepdim=True))


def circuit_logit_diff__mean_of_the_clean_run(model, clean, corrupt, io_tokens, s_tokens, circuit):
    """the heads outside the circuit get their mean over the clean prompts instead of the corrupted ones."""
    return _ablated(model, clean, corrupt, io_tokens, s_tokens, circuit, lambda corr, cl: cl.mean(0, keepdim=True))


def circuit_logit_diff__zero_ablation(model, clean, corrupt, io_tokens, s_tokens, circuit):
    """the heads outside the circuit are set to zero instead of to their mean over the corrupted prompts."""
    return _ablated(model, clean, corrupt, io_tokens, s_tokens, circuit, lambda corr, cl: torch.zeros_like(corr))


def circuit_logit_diff__circuit_ablated_instead(model, clean, corrupt, io_tokens, s_tokens, circuit):
    """the mask is inverted: the circuit's heads are ablated and the others kept."""
    return ref.circuit_logit_diff(model, clean, corrupt, io_tokens, s_tokens, ~circuit)
