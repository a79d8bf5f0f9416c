"""Feature circuits (Marks et al. 2024): SAEs spliced into a model, and the effects of their nodes.

Each SAE is spliced into the forward pass as x = x̂(f) + ε, so every latent f_i AND every error term
ε is a node. A node's effect on a metric is estimated with attribution patching or integrated
gradients, or measured with activation patching; circuits are scored by mean-ablating every node
outside them. Node activations of one layer are a dict ``{"latents": [batch, pos, d_sae], "error":
[batch, pos, d_model]}`` over the positions after BOS (the attention sink the SAEs never saw); a
layer's node scores are a vector ``[d_sae + 1]`` (one per latent, the last is the error node). The
estimators and ablation default to section 04a's reference implementations; its notebook passes
the learner's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.patching import after_bos, final_logits
from utils.references.chapter04a import attribution, integrated_gradients, logit_diff, mean_ablate, top_nodes
from utils.sae.base import decode
from utils.sae.model import encode

K = 32  # the SAEs are TopK SAEs with k = 32
Nodes = dict[str, Tensor]  # {"latents": [batch, pos, d_sae], "error": [batch, pos, d_model]}




def sae_nodes(params: dict[str, Tensor], x: Float[Tensor, "batch pos d_model"]) -> Nodes:
    """The nodes of one layer: latents f = encode(x) and the error ε = x − x̂(f).

    f is cut from the graph (a constant for autograd) and ε carries x's gradient: x̂(f) + ε then passes
    gradients through unchanged (dx/dx = 1, as in the model without SAEs), while ∂m/∂f and ∂m/∂ε are the
    partial derivatives with the other node held fixed, as in the paper."""
    f = encode(params, x.detach(), K)
    if x.requires_grad:
        f.requires_grad_(True)
    return {"latents": f, "error": x - decode(params, f).detach()}


def splice(params: dict[str, Tensor], nodes: Nodes) -> Float[Tensor, "batch pos d_model"]:
    """x̂(f) + ε: equal to x in value, but a function of the nodes."""
    return decode(params, nodes["latents"]) + nodes["error"]


def run_with_saes(
    model: HookedTransformer,
    saes: dict,
    tokens: Int[Tensor, "batch pos"],
    edit: Callable[[int, Nodes], Nodes] | None = None,
    keep_grad: bool = False,
) -> tuple[Float[Tensor, "batch vocab"], dict[int, Nodes]]:
    """Final-position logits with every SAE spliced in (positions after BOS), and each layer's nodes.

    ``edit(layer, nodes)`` may replace a layer's nodes (e.g. mean-ablate some); ``keep_grad`` keeps the
    graph so that the nodes' gradients can be taken afterwards.
    """
    store: dict[int, Nodes] = {}

    def spliced(x: Tensor, layer: int) -> Tensor:
        nodes = sae_nodes(saes[layer], x)
        if edit is not None:
            nodes = edit(layer, nodes)
        store[layer] = nodes
        return splice(saes[layer], nodes)

    def hook(resid: Tensor, hook, layer: int) -> Tensor:
        if keep_grad and not resid.requires_grad:  # the first spliced layer: start the graph here
            resid = resid.detach().requires_grad_(True)
        return after_bos(functools.partial(spliced, layer=layer))(resid, hook)

    hooks = [(f"blocks.{layer}.hook_resid_pre", functools.partial(hook, layer=layer)) for layer in saes]
    with torch.set_grad_enabled(keep_grad), model.hooks(fwd_hooks=hooks):
        resid = model(tokens, stop_at_layer=model.cfg.n_layers)
    return model.unembed(model.ln_final(resid[:, -1:]))[:, 0], store  # unembed only the last position


def _metric(logits_last: Tensor, data: dict, metric_fn: Callable) -> Tensor:
    return metric_fn(logits_last[:, None], data["correct"], data["wrong"])


def attribution_scores(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    attribution_fn: Callable = attribution,
    metric_fn: Callable = logit_diff,
) -> tuple[dict[int, Tensor], dict[int, Nodes], dict[int, Nodes]]:
    """Attribution patching: one forward + backward on the clean prompts, one forward on the corrupted.

    Returns each layer's node scores and the clean and corrupted ("patch") nodes.
    """
    logits, clean = run_with_saes(model, saes, data["clean"], keep_grad=True)
    leaves = [clean[layer][name] for layer in saes for name in ("latents", "error")]
    grads = torch.autograd.grad(_metric(logits, data, metric_fn).sum(), leaves)
    grad = {layer: {"latents": grads[2 * i], "error": grads[2 * i + 1]} for i, layer in enumerate(saes)}
    _, patch = run_with_saes(model, saes, data["corrupt"])
    clean = {layer: {name: t.detach() for name, t in nodes.items()} for layer, nodes in clean.items()}
    scores = {layer: attribution_fn(grad[layer], clean[layer], patch[layer]) for layer in saes}
    return scores, clean, patch


def layer_grad_fn(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    layer: int,
    bos: Tensor,
    metric_fn: Callable = logit_diff,
    chunk: int = 1,
) -> Callable[[Nodes], Nodes]:
    """grad_fn for `integrated_gradients` at one layer: given node values [steps, batch, pos, ...] it
    splices them in (the other layers untouched), runs the rest of the model and returns the gradient of
    the summed metric with respect to them, for every step (``chunk`` steps per pass: a forward pass with
    gradients costs ~0.4 GB plus ~2 MB per token here, so this bounds memory)."""

    def grad_fn(points: Nodes) -> Nodes:
        steps, batch = points["latents"].shape[:2]
        out = {"latents": torch.empty_like(points["latents"]), "error": torch.empty_like(points["error"])}
        for start in range(0, steps, chunk):
            with torch.enable_grad():
                nodes = {name: t[start : start + chunk].detach().flatten(0, 1).requires_grad_(True) for name, t in points.items()}
                n = len(nodes["latents"]) // batch
                resid = torch.cat([bos.repeat(n, 1, 1), splice(saes[layer], nodes)], dim=1)
                logits = final_logits(model, resid, start_at_layer=layer)[:, 0]
                metric = metric_fn(logits[:, None], data["correct"].repeat(n), data["wrong"].repeat(n)).sum()
                g_lat, g_err = torch.autograd.grad(metric, [nodes["latents"], nodes["error"]])
            out["latents"][start : start + chunk] = g_lat.unflatten(0, (n, batch))
            out["error"][start : start + chunk] = g_err.unflatten(0, (n, batch))
        return out

    return grad_fn


def ig_scores(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    clean: dict[int, Nodes],
    patch: dict[int, Nodes],
    ig_fn: Callable = integrated_gradients,
    steps: int = 10,
    metric_fn: Callable = logit_diff,
) -> dict[int, Tensor]:
    """Integrated gradients layer by layer, as in the paper: one layer's nodes move along the path
    clean → patch while the other layers are computed normally."""
    scores = {}
    for layer in tqdm(saes, desc=f"integrated gradients ({steps} steps)", mininterval=1.0):
        with torch.no_grad():
            # BOS is position 0 and attends only to itself: its residual doesn't depend on the prompt
            _, cache = model.run_with_cache(
                data["clean"][:, :1], stop_at_layer=layer + 1, names_filter=f"blocks.{layer}.hook_resid_pre"
            )
        bos = cache[f"blocks.{layer}.hook_resid_pre"]
        grad_fn = layer_grad_fn(model, saes, data, layer, bos, metric_fn)
        scores[layer] = ig_fn(grad_fn, clean[layer], patch[layer], steps)
    return scores


def patching_effects(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    clean: dict[int, Nodes],
    patch: dict[int, Nodes],
    nodes: list[tuple[int, int]],
    metric_fn: Callable = logit_diff,
) -> Float[Tensor, " n_nodes"]:
    """True activation patching: the change of the mean metric when ONE node (layer, index; index d_sae
    = the error node) takes its corrupted value at every position and everything downstream is recomputed.
    One batched forward pass per layer (from that layer on)."""
    batch = len(data["clean"])
    effects = torch.zeros(len(nodes))
    with torch.no_grad():
        _, cache = model.run_with_cache(data["clean"], stop_at_layer=max(saes) + 1, names_filter=lambda name: "resid_pre" in name)
        for layer in tqdm(sorted({layer for layer, _ in nodes}), desc="activation patching", mininterval=1.0):
            params, c, p = saes[layer], clean[layer], patch[layer]
            which = [i for i, (node_layer, _) in enumerate(nodes) if node_layer == layer]
            resid = cache[f"blocks.{layer}.hook_resid_pre"].repeat(len(which) + 1, 1, 1)  # copy 0: nothing patched
            for copy, i in enumerate(which, start=1):
                index, rows = nodes[i][1], slice(copy * batch, (copy + 1) * batch)
                if index == params["W_dec"].shape[0]:
                    resid[rows, 1:] += p["error"] - c["error"]
                else:
                    resid[rows, 1:] += (p["latents"][..., index] - c["latents"][..., index])[..., None] * params["W_dec"][index]
            n = len(which) + 1
            m = metric_fn(final_logits(model, resid, start_at_layer=layer), data["correct"].repeat(n), data["wrong"].repeat(n))
            m = m.view(n, batch).mean(1)
            effects[which] = m[1:] - m[0]
    return effects


def node_means(clean: dict[int, Nodes]) -> dict[int, Nodes]:
    """Each node's mean activation over the clean prompts, per position (what mean ablation substitutes)."""
    return {layer: {name: t.mean(0) for name, t in nodes.items()} for layer, nodes in clean.items()}


def circuit_metrics(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    keeps: list[dict[int, Tensor]],
    means: dict[int, Nodes],
    ablate_fn: Callable = mean_ablate,
    metric_fn: Callable = logit_diff,
) -> Float[Tensor, " circuits"]:
    """Mean metric on the clean prompts for each circuit in ``keeps``, every node outside it mean-ablated at
    every layer. All circuits run in one batched forward pass (one copy of the prompts per circuit)."""
    batch, n = len(data["clean"]), len(keeps)

    def edit(layer: int, nodes: Nodes) -> Nodes:
        parts = [
            ablate_fn({name: t[c * batch : (c + 1) * batch] for name, t in nodes.items()}, means[layer], keeps[c][layer])
            for c in range(n)
        ]
        return {name: torch.cat([part[name] for part in parts]) for name in nodes}

    logits, _ = run_with_saes(model, saes, data["clean"].repeat(n, 1), edit=edit)
    return metric_fn(logits[:, None], data["correct"].repeat(n), data["wrong"].repeat(n)).view(n, batch).mean(1)


def faithfulness_curve(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    scores: dict[int, Tensor],
    means: dict[int, Nodes],
    sizes: list[int],
    select_fn: Callable = top_nodes,
    ablate_fn: Callable = mean_ablate,
) -> dict[str, object]:
    """m(C) for the top-n circuits and m(M − C) for their complements, plus m(∅) (everything ablated) and
    m(M) (nothing ablated: the full model, since x̂ + ε = x)."""
    everything = {layer: torch.ones(len(s), dtype=torch.bool) for layer, s in scores.items()}
    nothing = {layer: torch.zeros(len(s), dtype=torch.bool) for layer, s in scores.items()}
    circuits = [select_fn(scores, n) for n in sizes]
    complements = [{layer: ~keep for layer, keep in circuit.items()} for circuit in circuits]
    m = circuit_metrics(model, saes, data, [everything, nothing, *circuits, *complements], means, ablate_fn)
    return {
        "sizes": sizes,
        "m_full": m[0].item(),
        "m_empty": m[1].item(),
        "m_circuit": m[2 : 2 + len(sizes)],
        "m_complement": m[2 + len(sizes) :],
    }
