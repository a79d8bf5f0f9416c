"""Chapter 03's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/03_ioi.ipynb`; the checks
(`utils/chapter03.py`) compare a learner's function with these on fixed cases. Conventions: a
dataset's prompts all have the same token length (names at the same positions); the metric is the
logit difference logit(IO) − logit(S) at the final position; patching scans are normalised so that
0 = the corrupted run and 1 = the clean run.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from utils.patching import final_logits


def ioi_prompt_pair(template: str, io: str, s: str, third: str, order: str) -> tuple[str, str]:
    """(clean prompt, corrupted ABC prompt) from a template with [A], [B], [S] slots.

    Args:
        template: e.g. "When [A] and [B] went to the store, [S] gave a drink to".
        io, s, third: the indirect object, the subject, and the name that replaces S's second mention.
        order: "ABBA" (IO first) or "BABA" (S first).
    """
    a, b = (io, s) if order == "ABBA" else (s, io)
    first = template.replace("[A]", a).replace("[B]", b)
    return first.replace("[S]", s), first.replace("[S]", third)


def logit_diff(
    logits: Float[Tensor, "batch pos d_vocab"], io_tokens: Int[Tensor, " batch"], s_tokens: Int[Tensor, " batch"]
) -> Float[Tensor, " batch"]:
    """logit(IO) - logit(S) at the final position, one value per prompt."""
    final = logits[:, -1]
    return final.gather(-1, io_tokens[:, None])[:, 0] - final.gather(-1, s_tokens[:, None])[:, 0]


def logit_diff_directions(
    model: HookedTransformer, io_tokens: Int[Tensor, " batch"], s_tokens: Int[Tensor, " batch"]
) -> Float[Tensor, "batch d_model"]:
    """W_U[:, io] - W_U[:, s] for every prompt (model.W_U is [d_model, d_vocab])."""
    return (model.W_U[:, io_tokens] - model.W_U[:, s_tokens]).T


def component_dla(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], io_tokens: Int[Tensor, " batch"], s_tokens: Int[Tensor, " batch"]
) -> Float[Tensor, " component"]:
    """Mean direct contribution of every component of the final residual stream to logit(IO) - logit(S)."""
    keep = ("hook_embed", "hook_pos_embed", "hook_attn_out", "hook_mlp_out", "ln_final.hook_scale")
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(keep))
    parts = cache.decompose_resid(layer=-1, pos_slice=-1)
    parts = cache.apply_ln_to_stack(parts, layer=-1, pos_slice=-1)
    directions = logit_diff_directions(model, io_tokens, s_tokens)
    return einops.einsum(parts, directions, "comp batch d, batch d -> comp") / len(tokens)


def head_dla(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], io_tokens: Int[Tensor, " batch"], s_tokens: Int[Tensor, " batch"]
) -> Float[Tensor, "layer head"]:
    """Mean direct contribution of every head's output at the last position to logit(IO) - logit(S)."""
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(("hook_z", "ln_final.hook_scale")))
    z = torch.stack([cache["z", layer][:, -1] for layer in range(model.cfg.n_layers)])  # [layer, batch, head, d_head]
    heads = einops.einsum(z, model.W_O, "layer batch head dh, layer head dh d -> layer head batch d").flatten(0, 1)
    heads = cache.apply_ln_to_stack(heads, layer=-1, pos_slice=-1)
    directions = logit_diff_directions(model, io_tokens, s_tokens)
    dla = einops.einsum(heads, directions, "comp batch d, batch d -> comp") / len(tokens)
    return einops.rearrange(dla, "(layer head) -> layer head", layer=model.cfg.n_layers)


def patch_residual(
    model: HookedTransformer,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    io_tokens: Int[Tensor, " batch"],
    s_tokens: Int[Tensor, " batch"],
    layers: list[int],
) -> Float[Tensor, "layers pos"]:
    """Normalised logit difference of the corrupted run with resid_pre[layer][:, pos] taken from the clean run."""
    batch, n_pos = clean.shape
    only_resid = lambda name: name.endswith("resid_pre")  # noqa: E731
    clean_logits, clean_cache = model.run_with_cache(clean, names_filter=only_resid)
    corrupt_logits, corrupt_cache = model.run_with_cache(corrupt, names_filter=only_resid)
    ld_clean = logit_diff(clean_logits, io_tokens, s_tokens).mean()
    ld_corrupt = logit_diff(corrupt_logits, io_tokens, s_tokens).mean()
    out = torch.zeros(len(layers), n_pos)
    for row, layer in enumerate(layers):
        resid = einops.repeat(corrupt_cache["resid_pre", layer], "batch pos d -> (p batch) pos d", p=n_pos).clone()
        for pos in range(n_pos):  # row block `pos` gets the clean value at position `pos`
            resid[pos * batch : (pos + 1) * batch, pos] = clean_cache["resid_pre", layer][:, pos]
        logits = final_logits(model, resid, start_at_layer=layer)  # [(p batch), 1, d_vocab]
        ld = logit_diff(logits, io_tokens.repeat(n_pos), s_tokens.repeat(n_pos))
        out[row] = einops.rearrange(ld, "(p batch) -> p batch", p=n_pos).mean(-1)
    return (out - ld_corrupt) / (ld_clean - ld_corrupt)


def patch_heads(
    model: HookedTransformer,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    io_tokens: Int[Tensor, " batch"],
    s_tokens: Int[Tensor, " batch"],
    layers: list[int],
) -> Float[Tensor, "layers head"]:
    """Normalised logit difference of the corrupted run with one head's z (all positions) from the clean run."""
    n_heads = model.cfg.n_heads
    want = lambda name: name.endswith(("hook_z", "resid_pre"))  # noqa: E731
    clean_logits, clean_cache = model.run_with_cache(clean, names_filter=want)
    corrupt_logits, corrupt_cache = model.run_with_cache(corrupt, names_filter=want)
    ld_clean = logit_diff(clean_logits, io_tokens, s_tokens).mean()
    ld_corrupt = logit_diff(corrupt_logits, io_tokens, s_tokens).mean()
    out = torch.zeros(len(layers), n_heads)
    for row, layer in enumerate(layers):

        def patch(z: Tensor, hook, layer: int = layer) -> Tensor:
            z = einops.rearrange(z, "(h batch) pos head d -> h batch pos head d", h=n_heads).clone()
            for head in range(n_heads):
                z[head, :, :, head] = clean_cache["z", layer][:, :, head]
            return einops.rearrange(z, "h batch pos head d -> (h batch) pos head d")

        resid = corrupt_cache["resid_pre", layer].repeat(n_heads, 1, 1)
        with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)]):
            logits = final_logits(model, resid, start_at_layer=layer)
        ld = logit_diff(logits, io_tokens.repeat(n_heads), s_tokens.repeat(n_heads))
        out[row] = einops.rearrange(ld, "(h batch) -> h batch", h=n_heads).mean(-1)
    return (out - ld_corrupt) / (ld_clean - ld_corrupt)


def attribution_patch(
    model: HookedTransformer,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    io_tokens: Int[Tensor, " batch"],
    s_tokens: Int[Tensor, " batch"],
    act_name: str,
) -> Float[Tensor, "layer pos *head"]:
    """Linear estimate of patching each activation (clean into corrupted), normalised like the patching scans.

    Shapes: [layer, pos, head] for act_name "z", [layer, pos] for "resid_pre".
    """
    hook = "attn.hook_z" if act_name == "z" else f"hook_{act_name}"
    names = [f"blocks.{layer}.{hook}" for layer in range(model.cfg.n_layers)]
    clean_logits, clean_cache = model.run_with_cache(clean, names_filter=lambda name: name in names)
    acts = {}

    def keep(act: Tensor, hook) -> None:
        act.retain_grad()
        acts[hook.name] = act

    def embed_needs_grad(x: Tensor, hook) -> Tensor:
        return x.requires_grad_(True)

    with torch.enable_grad():
        corrupt_logits = model.run_with_hooks(corrupt, fwd_hooks=[("hook_embed", embed_needs_grad)] + [(n, keep) for n in names])
        ld_corrupt = logit_diff(corrupt_logits, io_tokens, s_tokens).mean()
        ld_corrupt.backward()
    ld_clean = logit_diff(clean_logits, io_tokens, s_tokens).mean()
    scores = [((clean_cache[n] - acts[n].detach()) * acts[n].grad).sum(dim=(0, -1)) for n in names]
    return torch.stack(scores) / (ld_clean - ld_corrupt.detach())


def path_patch_to_logits(
    model: HookedTransformer,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    io_tokens: Int[Tensor, " batch"],
    s_tokens: Int[Tensor, " batch"],
) -> Float[Tensor, "layer head"]:
    """Effect of each head's direct path to the logits: (LD_path - LD_clean) / (LD_clean - LD_corrupt)."""
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    clean_logits, clean_cache = model.run_with_cache(clean, names_filter=lambda name: name.endswith("hook_z") or name == last)
    corrupt_logits, corrupt_cache = model.run_with_cache(corrupt, names_filter=lambda name: name.endswith("hook_z"))
    ld_clean = logit_diff(clean_logits, io_tokens, s_tokens).mean()
    ld_corrupt = logit_diff(corrupt_logits, io_tokens, s_tokens).mean()
    z_clean = torch.stack([clean_cache["z", layer][:, -1] for layer in range(model.cfg.n_layers)])
    z_corrupt = torch.stack([corrupt_cache["z", layer][:, -1] for layer in range(model.cfg.n_layers)])
    delta = einops.einsum(z_corrupt - z_clean, model.W_O, "layer batch head dh, layer head dh d -> layer head batch d")
    resid = model.ln_final(clean_cache[last][:, -1] + delta)
    ld = einops.einsum(resid, logit_diff_directions(model, io_tokens, s_tokens), "l h batch d, batch d -> l h batch")
    return (ld.mean(-1) - ld_clean) / (ld_clean - ld_corrupt)


def sender_attn_out(
    model: HookedTransformer, clean: Int[Tensor, "batch pos"], corrupt: Int[Tensor, "batch pos"]
) -> Float[Tensor, "layer head batch d_model"]:
    """Each layer's attention output at END with one head, the sender, taken from the corrupted run.

    Entry [l, h] is what `blocks.{l}.hook_attn_out` at the last position would be if head h of layer l
    gave its output on the corrupted prompts and every other head of that layer its output on the
    clean ones: the clean attention output plus head h's corrupted-minus-clean `z @ W_O`.
    """
    n_layers = model.cfg.n_layers
    want = lambda name: name.endswith(("hook_z", "hook_attn_out"))  # noqa: E731
    _, clean_cache = model.run_with_cache(clean, names_filter=want)
    _, corrupt_cache = model.run_with_cache(corrupt, names_filter=want)
    z_diff = torch.stack([corrupt_cache["z", layer][:, -1] - clean_cache["z", layer][:, -1] for layer in range(n_layers)])
    change = einops.einsum(z_diff, model.W_O, "layer batch head dh, layer head dh d -> layer head batch d")
    attn_out = torch.stack([clean_cache["attn_out", layer][:, -1] for layer in range(n_layers)])  # [layer, batch, d]
    return attn_out[:, None] + change


def receiver_resid(
    model: HookedTransformer,
    clean: Int[Tensor, "batch pos"],
    sender_out: Float[Tensor, "layer head batch d_model"],
    layer: int,
) -> Float[Tensor, "layer head batch d_model"]:
    """The residual stream entering block `layer` at END, one per sender, with every head frozen.

    Entry [l, h]: the clean run at the last position, every attention layer's output frozen at its
    clean value except layer l's, which is `sender_out[l, h]`; the MLPs (and their norms) are
    recomputed on the changed stream. A sender at or after `layer` cannot reach it: its entry is the
    clean `blocks.{layer}.hook_resid_pre` at END.
    """
    _, cache = model.run_with_cache(clean, names_filter=lambda name: name.endswith(("hook_resid_pre", "hook_attn_out")))
    clean_in = cache["resid_pre", layer][:, -1]  # [batch, d_model]
    out = einops.repeat(clean_in, "batch d -> l h batch d", l=model.cfg.n_layers, h=model.cfg.n_heads).clone()
    resid = out[:0]  # [layers of senders so far, head, batch, d_model]: one stream per sender
    for at in range(layer):
        block = model.blocks[at]
        frozen = resid + cache["attn_out", at][:, -1]  # earlier senders: this layer's heads keep their clean output
        entering = cache["resid_pre", at][:, -1] + sender_out[at]  # this layer's senders enter: [head, batch, d_model]
        resid = torch.cat([frozen, entering[None]])
        resid = resid + block.mlp(block.ln2(resid))  # the MLP is recomputed on the changed stream
    out[:layer] = resid
    return out


def receiver_queries(
    model: HookedTransformer, resid: Float[Tensor, "*senders d_model"], layer: int, head: int, position: int
) -> Float[Tensor, "*senders d_head"]:
    """The query of head `head` of block `layer` read from residual streams `resid` at `position`.

    As the block computes it: `ln1`, then `W_Q[head]` and `b_Q[head]`, then (for a rotary model) the
    rotation of position `position`, with the attention layer's own `apply_rotary` (what
    `hook_rot_q` holds). Any leading axes of `resid` are kept.
    """
    attn = model.blocks[layer].attn
    q = model.blocks[layer].ln1(resid) @ attn.W_Q[head] + attn.b_Q[head]
    if model.cfg.positional_embedding_type == "rotary":
        one = q.reshape(-1, 1, 1, q.shape[-1])  # [n, pos, head, d_head] with one position and one head
        q = attn.apply_rotary(one, past_kv_pos_offset=position).reshape(q.shape)
    return q


def path_patch_to_queries(
    model: HookedTransformer,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    io_tokens: Int[Tensor, " batch"],
    s_tokens: Int[Tensor, " batch"],
    receivers: list[tuple[int, int]],
) -> Float[Tensor, "layer head"]:
    """Effect of each sender head on the logits through the receivers' queries only, normalised like exercise 9.

    For every sender: the receivers' new queries at END (exercises 10-12), their attention over the
    clean keys, their new output, and the change of that output (new minus clean, through `W_O`)
    added, summed over receivers, to the clean final residual stream at END; then `ln_final` and the
    logit difference, (LD_path - LD_clean) / (LD_clean - LD_corrupt).
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    last = f"blocks.{n_layers - 1}.hook_resid_post"
    rotary = model.cfg.positional_embedding_type == "rotary"
    want = ("hook_z", "hook_rot_k" if rotary else "hook_k", "hook_v")
    clean_logits, cache = model.run_with_cache(clean, names_filter=lambda name: name.endswith(want) or name == last)
    ld_clean = logit_diff(clean_logits, io_tokens, s_tokens).mean()
    ld_corrupt = logit_diff(model(corrupt), io_tokens, s_tokens).mean()
    senders = sender_attn_out(model, clean, corrupt)  # exercise 10
    resid = {layer: receiver_resid(model, clean, senders, layer) for layer in {layer for layer, _ in receivers}}  # 11
    group = n_heads // (model.cfg.n_key_value_heads or n_heads)  # query heads per key/value head
    change = torch.zeros(n_layers, n_heads, clean.shape[0], model.cfg.d_model)  # the receivers' output change at END
    for layer, head in receivers:
        q = receiver_queries(model, resid[layer], layer, head, clean.shape[1] - 1)  # exercise 12: [l, h, batch, d_head]
        k = cache["rot_k" if rotary else "k", layer][:, :, head // group]  # [batch, pos, d_head], clean
        v = cache["v", layer][:, :, head // group]
        scores = einops.einsum(q, k, "l h batch dh, batch pos dh -> l h batch pos") / model.cfg.d_head**0.5
        z = einops.einsum(scores.softmax(-1), v, "l h batch pos, batch pos dh -> l h batch dh")
        change += (z - cache["z", layer][:, -1, head]) @ model.W_O[layer, head]
    resid_final = model.ln_final(cache[last][:, -1] + change)
    ld = einops.einsum(resid_final, logit_diff_directions(model, io_tokens, s_tokens), "l h batch d, batch d -> l h batch")
    return (ld.mean(-1) - ld_clean) / (ld_clean - ld_corrupt)


def copying_scores(
    model: HookedTransformer, name_tokens: Int[Tensor, " names"], k: int = 5, negative: bool = False
) -> Float[Tensor, "layer head"]:
    """Fraction of names whose own token is among the top-k logits of each head's (negated) OV output."""
    embed = model.W_E[name_tokens]
    resid = embed + model.blocks[0].mlp(model.blocks[0].ln2(embed[None]))[0]
    values = einops.einsum(model.blocks[0].ln1(resid[None])[0], model.W_V, "names d, layer head d dh -> layer head names dh")
    out = einops.einsum(values, model.W_O, "layer head names dh, layer head dh d -> layer head names d")
    out = model.ln_final(-out if negative else out)
    scores = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    per_chunk = max(1, 1024 // (model.cfg.n_heads * len(name_tokens)))  # ~1024 rows of logits at a time
    for layers in torch.arange(model.cfg.n_layers).split(per_chunk):
        top = (out[layers] @ model.W_U + model.b_U).topk(k, dim=-1).indices
        scores[layers] = (top == name_tokens[None, None, :, None]).any(-1).float().mean(-1)
    return scores


def duplicate_token_scores(patterns: Float[Tensor, "layer head q_pos k_pos"], seq_len: int) -> Float[Tensor, "layer head"]:
    """Mean attention from position T + i to position i (i = 1..T) on [BOS, r, r] with T = seq_len."""
    return patterns.diagonal(offset=-seq_len, dim1=-2, dim2=-1)[..., -seq_len:].mean(dim=-1)


def circuit_logit_diff(
    model: HookedTransformer,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    io_tokens: Int[Tensor, " batch"],
    s_tokens: Int[Tensor, " batch"],
    circuit: Bool[Tensor, "layer head"],
) -> float:
    """Mean logit difference on `clean` with every head outside `circuit` mean-ablated over `corrupt`."""
    _, corrupt_cache = model.run_with_cache(corrupt, names_filter=lambda name: name.endswith("hook_z"))

    def ablate(z: Tensor, hook) -> Tensor:
        keep = circuit[hook.layer()]
        mean = corrupt_cache[hook.name].mean(0, keepdim=True)  # over prompts, per position
        return torch.where(keep[None, None, :, None], z, mean)

    logits = model.run_with_hooks(clean, fwd_hooks=[(lambda name: name.endswith("hook_z"), ablate)])
    return logit_diff(logits, io_tokens, s_tokens).mean().item()
