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


# path patching to the queries, step by step: (a) the senders' outputs


def _sender_attn_out(model, clean, corrupt, mode):
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    layers = range(model.cfg.n_layers)
    z_clean = torch.stack([clean_cache["z", layer][:, -1] for layer in layers])
    z_corrupt = torch.stack([corrupt_cache["z", layer][:, -1] for layer in layers])
    out = lambda z: einops.einsum(z, model.W_O, "l b h dh, l h dh d -> l h b d")  # noqa: E731
    if mode == "alone":
        return out(z_corrupt)
    if mode == "swapped":
        attn = torch.stack([corrupt_cache["attn_out", layer][:, -1] for layer in layers])
        return attn[:, None] + out(z_clean - z_corrupt)
    attn = torch.stack([corrupt_cache["attn_out", layer][:, -1] for layer in layers])  # "layer": all corrupted
    return attn[:, None].expand(-1, model.cfg.n_heads, -1, -1).clone()


def sender_attn_out__clean_and_corrupted_swapped(model, clean, corrupt):
    """clean and corrupted are swapped: the sender gives its clean output and the rest of its layer the corrupted one."""
    return _sender_attn_out(model, clean, corrupt, "swapped")


def sender_attn_out__sender_alone(model, clean, corrupt):
    """only the sender's own corrupted output (`z @ W_O`) is returned, without the clean outputs of the other heads of its
    layer."""
    return _sender_attn_out(model, clean, corrupt, "alone")


def sender_attn_out__whole_layer_corrupted(model, clean, corrupt):
    """every head of the sender's layer gives its corrupted output, not only the sender."""
    return _sender_attn_out(model, clean, corrupt, "layer")


# (b) the receivers' residual stream


def _receiver_resid(model, clean, sender_out, layer, mode):
    _, cache = model.run_with_cache(clean)
    out = cache["resid_pre", layer][:, -1].expand(model.cfg.n_layers, model.cfg.n_heads, -1, -1).clone()
    if mode == "linear":  # the sender's change goes straight to the receiver's layer, MLPs untouched
        for at in range(layer):
            out[at] += sender_out[at] - cache["attn_out", at][:, -1]
        return out
    for at in range(layer):
        resid = cache["resid_pre", at][:, -1] + sender_out[at]  # [head, batch, d_model]
        for later in range(at, layer):
            block = model.blocks[later]
            if later > at:
                resid = resid + cache["attn_out", later][:, -1]
            if mode == "clean_scale":
                normalised = resid / cache[f"blocks.{later}.ln2.hook_scale"][:, -1]
            else:
                normalised = block.ln2(resid)
            if not (mode == "skip_own" and later == at):
                resid = resid + block.mlp(normalised)
            else:
                resid = resid + cache["mlp_out", later][:, -1]
        out[at] = resid
    return out


def receiver_resid__mlps_frozen(model, clean, sender_out, layer):
    """the MLPs keep their clean outputs instead of being recomputed, so the sender's change reaches the receiver only
    directly."""
    return _receiver_resid(model, clean, sender_out, layer, "linear")


def receiver_resid__sender_layer_mlp_frozen(model, clean, sender_out, layer):
    """the MLP of the sender's own layer keeps its clean output: the recomputation starts one layer too late."""
    return _receiver_resid(model, clean, sender_out, layer, "skip_own")


def receiver_resid__clean_norm_scale(model, clean, sender_out, layer):
    """each MLP's input is divided by the clean run's norm scale (`ln2.hook_scale` from the cache) instead of the changed
    stream's own."""
    return _receiver_resid(model, clean, sender_out, layer, "clean_scale")


# (c) the receivers' queries


def receiver_queries__rotary_forgotten(model, resid, layer, head, position):
    """the query is not rotated (rotary embedding forgotten), so it cannot meet the rotated keys."""
    attn = model.blocks[layer].attn
    return model.blocks[layer].ln1(resid) @ attn.W_Q[head] + attn.b_Q[head]


def receiver_queries__norm_forgotten(model, resid, layer, head, position):
    """the residual stream goes into `W_Q` without the block's `ln1`."""
    attn = model.blocks[layer].attn
    q = resid @ attn.W_Q[head] + attn.b_Q[head]
    return attn.apply_rotary(q.reshape(-1, 1, 1, q.shape[-1]), past_kv_pos_offset=position).reshape(q.shape)


def receiver_queries__adjacent_pairs_rotated(model, resid, layer, head, position):
    """the rotation pairs adjacent dimensions (0, 1), (2, 3), … (GPT-J's convention) instead of the two halves of the
    query that TransformerLens pairs for this model (GPT-NeoX's and Llama's convention)."""
    attn = model.blocks[layer].attn
    q = model.blocks[layer].ln1(resid) @ attn.W_Q[head] + attn.b_Q[head]
    half = attn.rotary_cos.shape[-1] // 2  # TransformerLens stores each angle twice: for dimension i and i + half
    cos = attn.rotary_cos[position, :half].repeat_interleave(2)  # the same angles, given to adjacent pairs
    sin = attn.rotary_sin[position, :half].repeat_interleave(2)
    flipped = torch.stack([-q[..., 1::2], q[..., ::2]], dim=-1).flatten(-2)
    return q * cos + flipped * sin


# (d) the whole path


def _to_queries(model, clean, corrupt, io_tokens, s_tokens, receivers, kv=None, scale=True, whole_output=False, rotate=True):
    """The reference's computation with one step changed."""
    n_heads = model.cfg.n_heads
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    _, cache = model.run_with_cache(clean)
    ld_clean, ld_corrupt = _ld(model, clean, io_tokens, s_tokens), _ld(model, corrupt, io_tokens, s_tokens)
    senders = ref.sender_attn_out(model, clean, corrupt)
    group = n_heads // model.cfg.n_key_value_heads
    change = torch.zeros(model.cfg.n_layers, n_heads, clean.shape[0], model.cfg.d_model)
    resids = {layer: ref.receiver_resid(model, clean, senders, layer) for layer in {layer for layer, _ in receivers}}
    queries = ref.receiver_queries if rotate else receiver_queries__rotary_forgotten
    for layer, head in receivers:
        q = queries(model, resids[layer], layer, head, clean.shape[1] - 1)
        kv_head = kv(head, group) if kv is not None else head // group
        k, v = cache["rot_k", layer][:, :, kv_head], cache["v", layer][:, :, kv_head]
        scores = einops.einsum(q, k, "l h b dh, b p dh -> l h b p") / (model.cfg.d_head**0.5 if scale else 1.0)
        z = einops.einsum(scores.softmax(-1), v, "l h b p, b p dh -> l h b dh")
        change += (z if whole_output else z - cache["z", layer][:, -1, head]) @ model.W_O[layer, head]
    resid = model.ln_final(cache[last][:, -1] + change)
    ld = einops.einsum(resid, logit_diff_directions(model, io_tokens, s_tokens), "l h b d, b d -> l h b").mean(-1)
    return (ld - ld_clean) / (ld_clean - ld_corrupt)


def path_patch_to_queries__key_heads_tiled(model, clean, corrupt, io_tokens, s_tokens, receivers):
    """query heads are assigned to key/value heads in turn (`head % 3`) instead of in consecutive groups (`head // 3`)."""
    return _to_queries(model, clean, corrupt, io_tokens, s_tokens, receivers, kv=lambda head, group: head % (9 // group))


def path_patch_to_queries__scores_not_scaled(model, clean, corrupt, io_tokens, s_tokens, receivers):
    """the attention scores are not divided by √d_head before the softmax."""
    return _to_queries(model, clean, corrupt, io_tokens, s_tokens, receivers, scale=False)


def path_patch_to_queries__whole_output_added(model, clean, corrupt, io_tokens, s_tokens, receivers):
    """the receiver's whole new output is added to the final residual stream instead of its change (new minus clean)."""
    return _to_queries(model, clean, corrupt, io_tokens, s_tokens, receivers, whole_output=True)


def path_patch_to_queries__rotary_forgotten(model, clean, corrupt, io_tokens, s_tokens, receivers):
    """the receivers' new queries are not rotated (rotary embedding forgotten) before they meet the rotated keys."""
    return _to_queries(model, clean, corrupt, io_tokens, s_tokens, receivers, rotate=False)


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
