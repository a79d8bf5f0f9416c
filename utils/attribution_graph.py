"""Attribution graphs (Ameisen et al. 2025, "Circuit Tracing: Revealing Computational Graphs in Language Models").

For one prompt, the **local replacement model** is the real model with, in a band of layers, every MLP
replaced by its transcoder (`utils/transcoders.py`) plus an **error** term per position (what the
transcoder missed on this prompt), and with the attention patterns and the RMS-norm denominators frozen at
their values in the real run. It computes exactly the real model's logits; and with the transcoders'
latents held fixed, everything between them is linear. So the **direct effect** of a source node s (an
active latent, an error term, the residual stream entering the band at a position) on a target t (a latent's
pre-activation, or a logit) is one number, A[t, s] = (source's vector) · ∂t/∂(where s writes): a backward
pass from each target, as the paper computes them (its section 3.1); circuit-tracer batches the same backward
passes (one forward pass of the prompt copied ``batch_size`` times, then a backward pass per batch of targets
with the targets' vectors injected as gradients).

This module re-implements the parts of circuit-tracer (github.com/decoderesearch/circuit-tracer) the course
needs rather than importing it: circuit-tracer pins transformer-lens and torch versions that conflict with the
course's (TransformerLens 3) and reaches for the model hub. The node order, the pruning and the two graph
scores follow its ``graph.py`` (``prune_graph``, ``compute_graph_scores``) so numbers compare.

Nodes, in order: the selected features (layer, position, latent), sorted; the error nodes, layer-major
([band layer][position]); the input nodes (the residual stream entering the band at each position: the token
embeddings when the band starts at layer 0); the logit nodes. ``adjacency[target, source]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from utils.references import chapter05 as ref
from utils.transcoders import Transcoders, input_hook, output_hook, run_transcoder

# ---------------------------------------------------------------------------------------------
# The local replacement model of one prompt


@dataclass
class Replacement:
    """What the real run of one prompt freezes, and the transcoders' nodes on it.

    ``acts`` [band, pos, d_sae] are the latents (zero at BOS, position 0, whose MLP output goes whole into its
    error node: circuit-tracer leaves BOS features out too), ``errors`` [band, pos, d_model] = MLP output −
    transcoder output, ``resid_in`` [pos, d_model] the residual stream entering the band, ``logits`` [vocab] the
    real model's last-position logits."""

    tokens: Int[Tensor, " pos"]
    layers: tuple[int, ...]
    k: int
    resid_in: Float[Tensor, "pos d_model"]
    patterns: dict[int, Tensor]
    scales: dict[str, Tensor]
    acts: Float[Tensor, "band pos d_sae"]
    errors: Float[Tensor, "band pos d_model"]
    mlp_out: Float[Tensor, "band pos d_model"]
    logits: Float[Tensor, " vocab"]


def frozen_names(layers: tuple[int, ...]) -> list[str]:
    """The hooks whose values the local replacement model freezes: attention patterns and norm denominators."""
    names = [f"blocks.{layer}.{name}" for layer in layers for name in ("attn.hook_pattern", "ln1.hook_scale", "ln2.hook_scale")]
    return names + ["ln_final.hook_scale"]


def local_replacement(model: HookedTransformer, transcoders: Transcoders, k: int, tokens: Int[Tensor, " pos"]) -> Replacement:
    """Run the real model on ``tokens`` (one prompt, BOS first) and freeze what the replacement model needs."""
    layers = tuple(sorted(transcoders))
    if list(layers) != list(range(layers[0], model.cfg.n_layers)):
        raise ValueError(f"the band must run from its first layer to the last ({model.cfg.n_layers - 1}); got {layers}")
    names = set(frozen_names(layers)) | {input_hook(layer) for layer in layers} | {output_hook(layer) for layer in layers}
    names.add(f"blocks.{layers[0]}.hook_resid_pre")
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens[None], names_filter=lambda name: name in names)
        acts, errors = [], []
        for layer in layers:
            a, y_hat = run_transcoder(transcoders[layer], cache[input_hook(layer)][0], k)
            a[0] = 0  # BOS: no features; its MLP output is all error
            y_hat[0] = transcoders[layer]["b_dec"]
            acts.append(a)
            errors.append(cache[output_hook(layer)][0] - y_hat)
    return Replacement(
        tokens=tokens,
        layers=layers,
        k=k,
        resid_in=cache[f"blocks.{layers[0]}.hook_resid_pre"][0],
        patterns={layer: cache[f"blocks.{layer}.attn.hook_pattern"] for layer in layers},
        scales={name: cache[name] for name in frozen_names(layers) if name.endswith("hook_scale")},
        acts=torch.stack(acts),
        errors=torch.stack(errors),
        mlp_out=torch.stack([cache[output_hook(layer)][0] for layer in layers]),
        logits=logits[0, -1],
    )


def replacement_hooks(rep: Replacement, mlp_out: list[Tensor]) -> list[tuple[str, object]]:
    """Forward hooks of the local replacement model: frozen patterns and scales (any batch size), and each band
    MLP's output taken from ``mlp_out`` [batch, pos, d_model] per band layer (a leaf the caller differentiates)."""

    def frozen(value):
        return lambda x, hook: value.expand_as(x) if value.shape[0] == 1 else value

    hooks = [(name, frozen(rep.scales[name])) for name in rep.scales]
    hooks += [(f"blocks.{layer}.attn.hook_pattern", frozen(rep.patterns[layer])) for layer in rep.layers]
    hooks += [(output_hook(layer), lambda out, hook, i=i: mlp_out[i]) for i, layer in enumerate(rep.layers)]
    return hooks


def transcoder_outputs(
    rep: Replacement, transcoders: Transcoders, acts: Tensor | None = None
) -> Float[Tensor, "band pos d_model"]:
    """Each band layer's transcoder output acts @ W_dec + b_dec (``acts``: default, the prompt's latents)."""
    acts = rep.acts if acts is None else acts
    return torch.stack(
        [acts[i] @ transcoders[layer]["W_dec"] + transcoders[layer]["b_dec"] for i, layer in enumerate(rep.layers)]
    )


def run_replacement(
    model: HookedTransformer,
    rep: Replacement,
    transcoders: Transcoders,
    acts: Tensor | None = None,
    resid_in: Tensor | None = None,
    errors: Tensor | None = None,
) -> Float[Tensor, "pos vocab"]:
    """The local replacement model's logits, from the band's input, with latents ``acts`` held fixed: MLP outputs =
    transcoder(acts) + error. Every node defaults to the prompt's own value (which gives the real model's logits)."""
    errors = rep.errors if errors is None else errors
    mlp_out = list((transcoder_outputs(rep, transcoders, acts) + errors)[:, None])
    resid = (rep.resid_in if resid_in is None else resid_in)[None]
    with torch.no_grad():
        return model.run_with_hooks(resid, start_at_layer=rep.layers[0], fwd_hooks=replacement_hooks(rep, mlp_out))[0]


# ---------------------------------------------------------------------------------------------
# The attribution graph


@dataclass
class Graph:
    """A prompt's attribution graph (unpruned): see the module's docstring for the node order."""

    tokens: Int[Tensor, " pos"]
    layers: tuple[int, ...]
    features: Int[Tensor, "n_features 3"]  # (layer, position, latent) of each selected feature
    activations: Float[Tensor, " n_features"]
    adjacency: Float[Tensor, "nodes nodes"]
    logit_tokens: Int[Tensor, " n_logits"]
    logit_probabilities: Float[Tensor, " n_logits"]
    n_active: int  # active features on the prompt (the graph keeps the most influential of them)

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def errors(self) -> slice:
        return slice(self.n_features, self.n_features + len(self.layers) * self.n_pos)

    @property
    def inputs(self) -> slice:
        return slice(self.errors.stop, self.errors.stop + self.n_pos)

    @property
    def logits(self) -> slice:
        return slice(self.inputs.stop, self.inputs.stop + len(self.logit_tokens))

    def logit_weights(self) -> Float[Tensor, " nodes"]:
        """The logit nodes' probabilities, zero elsewhere: what influence is measured against."""
        weights = torch.zeros(len(self.adjacency))
        weights[self.logits] = self.logit_probabilities
        return weights

    def labels(self, model: HookedTransformer) -> list[str]:
        """A short name per node: "L20/f123@4", "err L20@4", "in 4 ' Mary'", "logit ' John'"."""
        words = [model.tokenizer.decode([t]) for t in self.tokens.tolist()]
        out = [f"L{layer}/f{latent}@{pos}" for layer, pos, latent in self.features.tolist()]
        out += [f"err L{layer}@{pos}" for layer in self.layers for pos in range(self.n_pos)]
        out += [f"in {pos} {words[pos]!r}" for pos in range(self.n_pos)]
        out += [f"logit {model.tokenizer.decode([t])!r}" for t in self.logit_tokens.tolist()]
        return out


def logit_targets(
    model: HookedTransformer,
    logits: Float[Tensor, " vocab"],
    max_n_logits: int = 10,
    desired_logit_prob: float = 0.95,
    targets: list[int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The top logits until their probabilities add up to ``desired_logit_prob`` (at most ``max_n_logits``), as
    circuit-tracer picks them, or the tokens ``targets``: (token ids, probabilities, demeaned unembedding columns
    [n, d_model]). A logit node's value is its logit minus the mean logit (what a softmax cares about)."""
    probs = torch.softmax(logits, dim=-1)
    if targets is not None:
        top = torch.tensor(targets, dtype=torch.long)
        top_p = probs[top]
    else:
        top_p, top = probs.topk(max_n_logits)
        cutoff = int(torch.searchsorted(top_p.cumsum(0), desired_logit_prob)) + 1
        top, top_p = top[:cutoff], top_p[:cutoff]
    W_U = model.W_U.detach()
    return top, top_p, (W_U[:, top] - W_U.mean(1, keepdim=True)).T


class _Backward:
    """One forward pass of the prompt copied ``batch`` times through the band, kept for many backward passes."""

    def __init__(
        self,
        model: HookedTransformer,
        rep: Replacement,
        transcoders: Transcoders,
        batch: int,
        features: Tensor,
        activations: Tensor,
    ) -> None:
        self.rep, self.batch, self.features = rep, batch, features
        self.band_index = features[:, 0] - rep.layers[0]
        self.decoder_vecs = activations[:, None] * torch.stack(  # a_s · W_dec[s]: what each active feature writes
            [transcoders[layer]["W_dec"][j] for layer, j in zip(features[:, 0].tolist(), features[:, 2].tolist())]
        )
        values = transcoder_outputs(rep, transcoders) + rep.errors
        self.mlp_out = [v.expand(batch, -1, -1).clone().requires_grad_(True) for v in values]
        self.resid_in = rep.resid_in.expand(batch, -1, -1).clone().requires_grad_(True)
        self.reads: dict[int | str, Tensor] = {}

        def keep(x, hook, key):
            self.reads[key] = x
            return x

        hooks = replacement_hooks(rep, self.mlp_out)
        hooks += [(input_hook(layer), lambda x, hook, layer=layer: keep(x, hook, layer)) for layer in rep.layers]
        hooks.append(("ln_final.hook_normalized", lambda x, hook: keep(x, hook, "final")))
        with torch.enable_grad():
            model.run_with_hooks(self.resid_in, start_at_layer=rep.layers[0], fwd_hooks=hooks)

    def rows(self, where: list[tuple[int | str, int]], vectors: Float[Tensor, "n d_model"]) -> Float[Tensor, "n sources"]:
        """Direct effects on targets read at ``where`` [(layer or "final", position)] along ``vectors``: one row per
        target over the sources [features (all active ones), errors, inputs]."""
        rows = []
        for start in range(0, len(where), self.batch):
            chunk = where[start : start + self.batch]
            grads = {key: torch.zeros_like(self.reads[key]) for key, _ in chunk}
            for b, (key, pos) in enumerate(chunk):
                grads[key][b, pos] = vectors[start + b]
            keys = list(grads)
            leaves = [*self.mlp_out, self.resid_in]
            g = torch.autograd.grad(
                [self.reads[key] for key in keys],
                leaves,
                grad_outputs=[grads[key] for key in keys],
                retain_graph=True,
                allow_unused=True,
            )
            g = [torch.zeros_like(leaf) if grad is None else grad for grad, leaf in zip(g, leaves)]
            g_mlp, g_in = torch.stack(g[:-1], 1)[: len(chunk)], g[-1][: len(chunk)]  # [n, band, pos, d], [n, pos, d]
            located = torch.stack([self.band_index, self.features[:, 1]], 1)
            rows.append(ref.direct_effects(g_mlp, g_in, located, self.decoder_vecs, self.rep.errors, self.rep.resid_in))
        return torch.cat(rows).detach()


def attribute(
    model: HookedTransformer,
    transcoders: Transcoders,
    k: int,
    tokens: Int[Tensor, " pos"],
    max_feature_nodes: int = 256,
    batch_size: int = 32,
    max_n_logits: int = 10,
    desired_logit_prob: float = 0.95,
    update_every: int = 4,
    targets: list[int] | None = None,
) -> Graph:
    """The attribution graph of ``tokens`` through the local replacement model (circuit-tracer's ``attribute``).

    Rows are computed for the logit targets first, then for features in order of their influence on the logits
    as estimated from the rows computed so far (re-estimated every ``update_every`` batches), until
    ``max_feature_nodes`` features have rows; the graph keeps those features' columns."""
    rep = local_replacement(model, transcoders, k, tokens)
    band, pos, latent = rep.acts.nonzero(as_tuple=True)
    active = torch.stack([band + rep.layers[0], pos, latent], 1)
    values = rep.acts[band, pos, latent]
    n_active, n_pos, n_band = len(active), len(tokens), len(rep.layers)
    top, top_p, logit_vecs = logit_targets(model, rep.logits, max_n_logits, desired_logit_prob, targets)
    runner = _Backward(model, rep, transcoders, batch_size, active, values)
    logit_rows = runner.rows([("final", n_pos - 1)] * len(top), logit_vecs)
    n_sources = logit_rows.shape[1]
    encoders = torch.stack([transcoders[layer]["W_enc"][:, j] for layer, j in zip(active[:, 0].tolist(), active[:, 2].tolist())])

    feature_rows = torch.zeros(0, n_sources)
    chosen: list[int] = []
    visited = torch.zeros(n_active, dtype=torch.bool)
    max_feature_nodes = min(max_feature_nodes, n_active)
    while len(chosen) < max_feature_nodes:
        influence = _partial_influence(torch.cat([feature_rows, logit_rows]), chosen, top_p, n_active)
        ranked = influence.argsort(descending=True)
        queue = ranked[~visited[ranked]][: min(update_every * batch_size, max_feature_nodes - len(chosen))]
        where = [(int(active[i, 0]), int(active[i, 1])) for i in queue]
        feature_rows = torch.cat([feature_rows, runner.rows(where, encoders[queue])])
        chosen += queue.tolist()
        visited[queue] = True

    order = torch.tensor(sorted(chosen), dtype=torch.long)
    keep_cols = torch.cat([order, torch.arange(n_active, n_sources)])
    rows = feature_rows[torch.tensor(chosen).argsort()][:, keep_cols]
    n = len(order) + n_band * n_pos + n_pos + len(top)
    adjacency = torch.zeros(n, n)
    adjacency[: len(order), : len(keep_cols)] = rows
    adjacency[-len(top) :, : len(keep_cols)] = logit_rows[:, keep_cols]
    return Graph(
        tokens=tokens,
        layers=rep.layers,
        features=active[order],
        activations=values[order],
        adjacency=adjacency,
        logit_tokens=top,
        logit_probabilities=top_p,
        n_active=n_active,
    )


def _partial_influence(rows: Tensor, chosen: list[int], logit_p: Tensor, n_active: int) -> Tensor:
    """Each active feature's influence on the logits through the rows computed so far (features in ``chosen``,
    then the logits) — circuit-tracer's ``compute_partial_influences``."""
    normalized = rows.abs()
    normalized = normalized / normalized.sum(1, keepdim=True).clamp(min=1e-8)
    row_of = torch.full((rows.shape[1],), -1, dtype=torch.long)  # source column -> its row, if it has one
    row_of[torch.tensor(chosen, dtype=torch.long)] = torch.arange(len(chosen))
    weight = torch.cat([torch.zeros(len(chosen)), logit_p])  # per row: its influence so far
    influence = torch.zeros(rows.shape[1])
    for _ in range(128):
        through = weight @ normalized  # per source column
        if not through.any():
            break
        influence += through
        weight = torch.zeros(len(rows))
        has_row = row_of >= 0
        weight[row_of[has_row]] = through[has_row]
    return influence[:n_active]


# ---------------------------------------------------------------------------------------------
# Influence, pruning and the graph's scores (circuit-tracer's graph.py)


def normalize_matrix(adjacency: Float[Tensor, "nodes nodes"]) -> Float[Tensor, "nodes nodes"]:
    """|A| with each row scaled to sum to 1 (rows of zeros stay zero)."""
    a = adjacency.abs()
    return a / a.sum(1, keepdim=True).clamp(min=1e-10)


def influence(adjacency: Float[Tensor, "nodes nodes"], logit_weights: Float[Tensor, " nodes"]) -> Float[Tensor, " nodes"]:
    """w (A + A² + A³ + …) = w ((I − A)⁻¹ − I), A = `normalize_matrix(adjacency)`: the chapter's exercise."""
    return ref.influence(adjacency, logit_weights)


def prune_graph(
    graph: Graph, node_threshold: float = 0.8, edge_threshold: float = 0.98
) -> tuple[Bool[Tensor, " nodes"], Bool[Tensor, "nodes nodes"], Float[Tensor, " nodes"]]:
    """(node mask, edge mask, each node's cumulative influence rank) — circuit-tracer's ``prune_graph``: keep the
    nodes holding ``node_threshold`` of the influence (inputs and logits always), then the edges holding
    ``edge_threshold`` of the edge influence, then drop nodes left without outgoing (or, for features, incoming)
    edges until nothing changes."""
    weights = graph.logit_weights()
    node_influence = influence(graph.adjacency, weights)
    node_mask = ref.keep_by_influence(node_influence, node_threshold)
    node_mask[graph.inputs.start :] = True
    pruned = graph.adjacency.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    edge_scores = normalize_matrix(pruned) * (influence(pruned, weights) + weights)[:, None]
    edge_mask = ref.keep_by_influence(edge_scores.flatten(), edge_threshold).view_as(edge_scores)
    ends = graph.inputs.start
    while True:
        before = node_mask.clone()
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[:ends] &= edge_mask[:, :ends].any(0)
        node_mask[: graph.n_features] &= edge_mask[: graph.n_features].any(1)
        if torch.equal(node_mask, before):
            break
    ordered, order = node_influence.sort(descending=True)
    cumulative = torch.zeros_like(node_influence)
    cumulative[order] = ordered.cumsum(0) / ordered.sum()
    return node_mask, edge_mask, cumulative


def graph_scores(graph: Graph, node_mask: Bool[Tensor, " nodes"] | None = None) -> tuple[float, float]:
    """(replacement score, completeness score) — circuit-tracer's ``compute_graph_scores``.

    Replacement: of the influence the input nodes and the error nodes have on the logits, the inputs' share
    (1 when everything flows from the inputs through features). Completeness: over all nodes, weighted by their
    influence on the output (plus the logits' own weights), the fraction of each node's incoming |edges| that
    does not come from error nodes. With ``node_mask`` (`prune_graph`'s), the pruned graph's scores as the paper
    charts them ("Graph Pruning", methods.html#evaluating-graphs-pruning): every pruned feature counts as an
    error node — what it carried is no longer explained — and, like an error node, has no inputs."""
    is_error = torch.zeros(len(graph.adjacency), dtype=torch.bool)
    is_error[graph.errors] = True
    adjacency = graph.adjacency
    if node_mask is not None:
        pruned = ~node_mask
        pruned[graph.n_features :] = False
        is_error |= pruned
        adjacency = adjacency.clone()
        adjacency[pruned] = 0
    is_input = torch.zeros_like(is_error)
    is_input[graph.inputs] = True
    return ref.graph_scores(adjacency, graph.logit_weights(), is_error, is_input)


# ---------------------------------------------------------------------------------------------
# The graph against the model: interventions


def predicted_change(graph: Graph, nodes: list[int], factor: float, logit: int = 0) -> tuple[float, float]:
    """What the graph predicts for the demeaned logit of ``graph.logit_tokens[logit]`` when the features ``nodes``
    (indices into the graph's features) are multiplied by ``factor`` (0: ablated): (direct effect only, effect
    along every path through the graph's features, each downstream feature taken as linear in its input)."""
    target = graph.logits.start + logit
    direct = (factor - 1.0) * float(graph.adjacency[target, nodes].sum())
    return direct, ref.predicted_change(graph.adjacency, graph.activations, nodes, factor, target)


def frozen_change(
    model: HookedTransformer,
    transcoders: Transcoders,
    rep: Replacement,
    graph: Graph,
    nodes: list[int],
    factor: float,
    logit: int = 0,
) -> float:
    """The change of the same demeaned logit in the local replacement model with its latents **live**: attention
    patterns, norm denominators and error terms frozen, every band MLP's output recomputed as its transcoder's output
    (TopK and all) on the MLP's live input, with the features ``nodes`` multiplied by ``factor`` at their positions.
    The graph's linear prediction differs from this only where a downstream latent leaves (or enters) its top k."""
    token = int(graph.logit_tokens[logit])
    scaled: dict[int, list[tuple[int, int]]] = {}
    for i in nodes:
        layer, pos, latent = graph.features[i].tolist()
        scaled.setdefault(layer, []).append((pos, latent))
    inputs: dict[int, Tensor] = {}

    def keep(x, hook, layer):
        inputs[layer] = x
        return x

    def replace(out, hook, layer, band, intervene):
        acts = run_transcoder(transcoders[layer], inputs[layer], rep.k)[0]
        acts[:, 0] = 0
        if intervene:
            for pos, latent in scaled.get(layer, []):
                acts[:, pos, latent] = factor * rep.acts[band, pos, latent]
        return acts @ transcoders[layer]["W_dec"] + transcoders[layer]["b_dec"] + rep.errors[band]

    def run(intervene: bool) -> float:
        hooks = [h for h in replacement_hooks(rep, []) if not h[0].endswith("hook_mlp_out")]
        for band, layer in enumerate(rep.layers):
            hooks.append((input_hook(layer), lambda x, hook, layer=layer: keep(x, hook, layer)))
            hooks.append(
                (output_hook(layer), lambda out, hook, layer=layer, band=band: replace(out, hook, layer, band, intervene))
            )
        with torch.no_grad():
            logits = model.run_with_hooks(rep.resid_in[None], start_at_layer=rep.layers[0], fwd_hooks=hooks)[0, -1]
        return float(logits[token] - logits.mean())

    return run(True) - run(False)


def measured_change(
    model: HookedTransformer,
    transcoders: Transcoders,
    graph: Graph,
    nodes: list[int],
    factor: float,
    logit: int = 0,
    frozen: tuple[str, ...] = (),
    rep: Replacement | None = None,
) -> float:
    """The change of the same demeaned logit in the **real** model (attention, norms and MLPs all live) when each
    feature's decoder contribution a·W_dec is multiplied by ``factor`` at its layer and position.

    ``frozen`` may name "scales" (every band norm's denominator, and the final norm's, held at the prompt's values)
    and "patterns" (the band's attention patterns held): what the local replacement model freezes, one at a time,
    to see which of its assumptions a disagreement comes from (``rep``: the prompt's `local_replacement`)."""
    token = int(graph.logit_tokens[logit])
    by_layer: dict[int, list[tuple[int, Tensor]]] = {}
    for i in nodes:
        layer, pos, latent = graph.features[i].tolist()
        by_layer.setdefault(layer, []).append((pos, (factor - 1.0) * graph.activations[i] * transcoders[layer]["W_dec"][latent]))

    def shift(out, hook, layer):
        out = out.clone()
        for pos, delta in by_layer[layer]:
            out[:, pos] += delta
        return out

    held = []
    if frozen:
        if rep is None:
            raise ValueError("freezing needs the prompt's local replacement model: pass rep=local_replacement(...)")
        held = [
            (name, fn)
            for name, fn in replacement_hooks(rep, [])
            if ("scales" in frozen and name.endswith("hook_scale")) or ("patterns" in frozen and name.endswith("hook_pattern"))
        ]

    def demeaned(logits):
        return float(logits[0, -1, token] - logits[0, -1].mean())

    with torch.no_grad():
        clean = demeaned(model.run_with_hooks(graph.tokens[None], fwd_hooks=held))
        hooks = held + [(output_hook(layer), lambda out, hook, layer=layer: shift(out, hook, layer)) for layer in by_layer]
        return demeaned(model.run_with_hooks(graph.tokens[None], fwd_hooks=hooks)) - clean


# ---------------------------------------------------------------------------------------------
# Export: the JSON circuit-tracer's and Neuronpedia's graph viewer reads


def to_circuit_tracer_json(
    graph: Graph,
    node_mask: Tensor,
    edge_mask: Tensor,
    cumulative: Tensor,
    model: HookedTransformer,
    slug: str,
    node_threshold: float = 0.8,
) -> dict:
    """The pruned graph in circuit-tracer's graph-file schema (``frontend/graph_models.py``: metadata, qParams, nodes,
    links; node ids as its ``Node.feature_node`` / ``error_node`` / ``token_node`` / ``logit_node`` make them). Band
    layers keep their model layer numbers; the input nodes are exported as circuit-tracer's embedding nodes ("E"),
    although here they are the residual stream entering the band. ``json.dump`` it to a file and open it with
    circuit-tracer's local server (``circuit_tracer.frontend.local_server``)."""
    decode = model.tokenizer.decode
    n_layers = model.cfg.n_layers
    nodes: dict[int, dict] = {}
    for i in node_mask.nonzero().flatten().tolist():
        score = round(float(cumulative[i]), 6)
        if i < graph.n_features:
            layer, pos, latent = graph.features[i].tolist()
            cantor = (layer + latent) * (layer + latent + 1) // 2 + latent
            nodes[i] = {
                "node_id": f"{layer}_{latent}_{pos}",
                "feature": cantor,
                "layer": str(layer),
                "ctx_idx": pos,
                "feature_type": "cross layer transcoder",
                "jsNodeId": f"{layer}_{latent}-0",
                "influence": score,
                "activation": round(float(graph.activations[i]), 6),
            }
        elif i < graph.errors.stop:
            band, pos = divmod(i - graph.errors.start, graph.n_pos)
            layer = graph.layers[band]
            nodes[i] = {
                "node_id": f"0_{layer}_{pos}",
                "feature": -1,
                "layer": str(layer),
                "ctx_idx": pos,
                "feature_type": "mlp reconstruction error",
                "jsNodeId": f"{layer}_{pos}-0",
                "influence": score,
            }
        elif i < graph.inputs.stop:
            pos = i - graph.inputs.start
            token = int(graph.tokens[pos])
            nodes[i] = {
                "node_id": f"E_{token}_{pos}",
                "feature": pos,
                "layer": "E",
                "ctx_idx": pos,
                "feature_type": "embedding",
                "jsNodeId": f"E_{token}-{pos}",
                "influence": score,
            }
        else:
            n = i - graph.logits.start
            token, p = int(graph.logit_tokens[n]), float(graph.logit_probabilities[n])
            nodes[i] = {
                "node_id": f"{n_layers + 1}_{token}_{graph.n_pos - 1}",
                "feature": token,
                "layer": str(n_layers + 1),
                "ctx_idx": graph.n_pos - 1,
                "feature_type": "logit",
                "token_prob": round(p, 6),
                "is_target_logit": n == 0,
                "jsNodeId": f"L_{token}-{graph.n_pos - 1}",
                "clerp": f'Output "{decode([token])}" (p={p:.3f})',
            }
    targets, sources = edge_mask.nonzero(as_tuple=True)
    links = [
        {"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": round(float(graph.adjacency[t, s]), 6)}
        for t, s in zip(targets.tolist(), sources.tolist())
        if s in nodes and t in nodes
    ]
    connected = {link["source"] for link in links} | {link["target"] for link in links}
    used = [node for node in nodes.values() if node["node_id"] in connected or node["feature_type"] in ("embedding", "logit")]
    for node in used:
        node.setdefault("token_prob", 0.0)
        node.setdefault("is_target_logit", False)
        node.update(run_idx=0, reverse_ctx_idx=0)
        node.setdefault("clerp", "")
    metadata = {
        "slug": slug,
        "scan": f"{model.cfg.model_name}-transcoders-L{graph.layers[0]}-{graph.layers[-1]}",
        "transcoder_list": [],
        "prompt_tokens": [decode([t]) for t in graph.tokens.tolist()],
        "prompt": decode(graph.tokens.tolist()),
        "node_threshold": node_threshold,
        "schema_version": 1,
    }
    qparams = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": metadata, "qParams": qparams, "nodes": used, "links": links}
