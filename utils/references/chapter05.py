"""Chapter 05's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/05_circuit_tracing.ipynb`; the
checks (`utils/chapter05.py`) compare a learner's function with these on fixed cases, and the library is
built on them: `utils/transcoders.py` (the transcoder), `utils/attribution_graph.py` (the graph's edges,
influence, pruning, scores and its predictions). An attribution graph's nodes are, in order: features,
error nodes, input nodes, logit nodes; ``adjacency[target, source]`` is the direct effect of source on target.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def transcoder_forward(
    params: dict[str, Tensor], x: Float[Tensor, "... d_in"], k: int
) -> tuple[Float[Tensor, "... d_sae"], Float[Tensor, "... d_out"]]:
    """A TopK transcoder: latents f = TopK(x W_enc + b_enc), output f W_dec + b_dec.

    Args:
        params: {"W_enc": [d_in, d_sae], "b_enc": [d_sae], "W_dec": [d_sae, d_out], "b_dec": [d_out]}.
        x: the MLP's input (what the MLP reads), any leading shape.
        k: how many latents stay active per row: the k largest pre-activations, ReLU'd; the rest are 0.
    Returns:
        (latents [..., d_sae], predicted MLP output [..., d_out]).
    """
    pre = x @ params["W_enc"] + params["b_enc"]
    values, indices = pre.topk(k, dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
    return acts, acts @ params["W_dec"] + params["b_dec"]


def frozen_attention(
    resid: Float[Tensor, "pos d_model"],
    scale: Float[Tensor, "pos 1"],
    pattern: Float[Tensor, "head q_pos k_pos"],
    W_V: Float[Tensor, "head d_model d_head"],
    W_O: Float[Tensor, "head d_head d_model"],
) -> Float[Tensor, "q_pos d_model"]:
    """One attention layer's output with its pattern and its RMS-norm denominator frozen: a linear map of resid.

    Args:
        resid: the residual stream entering the layer, one prompt.
        scale: the norm's denominator per position, frozen from the real run (the normalised input is resid / scale;
            the norm's weights are folded into W_V).
        pattern: the attention pattern, frozen: pattern[h, q, k] is how much query position q of head h reads key k.
        W_V, W_O: each head's value and output weights (one W_V per query head; biases are zero in SmolLM2).
    Returns:
        Σ_h pattern_h (resid / scale) W_V[h] W_O[h], the layer's output at every position.
    """
    values = einops.einsum(resid / scale, W_V, "k_pos d_model, head d_model d_head -> head k_pos d_head")
    z = einops.einsum(pattern, values, "head q_pos k_pos, head k_pos d_head -> head q_pos d_head")
    return einops.einsum(z, W_O, "head q_pos d_head, head d_head d_model -> q_pos d_model")


def direct_effects(
    grad_mlp: Float[Tensor, "target band pos d_model"],
    grad_in: Float[Tensor, "target pos d_model"],
    features: Int[Tensor, "feature 2"],
    decoder_vecs: Float[Tensor, "feature d_model"],
    errors: Float[Tensor, "band pos d_model"],
    resid_in: Float[Tensor, "pos d_model"],
) -> Float[Tensor, "target sources"]:
    """Each source's direct effect on each target: what the source writes · the target's gradient where it writes.

    Args:
        grad_mlp: per target, the gradient of the target (its pre-activation, or its logit) with respect to every
            band layer's MLP output at every position, through the frozen local replacement model.
        grad_in: per target, the gradient with respect to the residual stream entering the band.
        features: (band layer index, position) of each active feature (band index 0 is the band's first layer).
        decoder_vecs: what each feature writes into its MLP output: its activation times its decoder row.
        errors: the error vector of every band layer and position; resid_in: the band's input at every position.
    Returns:
        [target, feature + band·pos + pos]: first the features' effects, then the error nodes' (band-major, then
        position), then the input nodes'.
    """
    feature_cols = (grad_mlp[:, features[:, 0], features[:, 1]] * decoder_vecs).sum(-1)
    error_cols = (grad_mlp * errors).sum(-1).flatten(1)
    input_cols = (grad_in * resid_in).sum(-1)
    return torch.cat([feature_cols, error_cols, input_cols], dim=1)


def influence(adjacency: Float[Tensor, "nodes nodes"], logit_weights: Float[Tensor, " nodes"]) -> Float[Tensor, " nodes"]:
    """Every node's influence on the logits, through paths of every length (Ameisen et al.'s pruning score).

    Args:
        adjacency: adjacency[t, s], the direct effect of node s on node t (a DAG: no path returns to its start).
        logit_weights: the logit nodes' probabilities, 0 for every other node.
    Returns:
        w (A + A² + A³ + …) with A = |adjacency| whose rows are scaled to sum to 1 (rows of zeros stay zero) and w the
        logit weights: the series ends because the graph has no cycles.
    """
    A = adjacency.abs()
    A = A / A.sum(1, keepdim=True).clamp(min=1e-10)
    current = logit_weights @ A
    total = current.clone()
    while current.any():
        current = current @ A
        total = total + current
    return total


def keep_by_influence(scores: Float[Tensor, " nodes"], fraction: float) -> Bool[Tensor, " nodes"]:
    """The nodes with the largest scores that together hold ``fraction`` of the total (circuit-tracer's threshold).

    Args:
        scores: non-negative influence scores.
        fraction: in [0, 1].
    Returns:
        A mask: True where the score is at least that of the first node, in decreasing order, at which the running
        share of the total reaches ``fraction`` (torch.searchsorted on the cumulative share; the last node if none).
    """
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum()
    index = min(int(torch.searchsorted(cumulative, fraction)), len(ordered) - 1)
    return scores >= ordered[index]


def graph_scores(
    adjacency: Float[Tensor, "nodes nodes"],
    logit_weights: Float[Tensor, " nodes"],
    is_error: Bool[Tensor, " nodes"],
    is_input: Bool[Tensor, " nodes"],
) -> tuple[float, float]:
    """(replacement score, completeness score) of an attribution graph (circuit-tracer's ``compute_graph_scores``).

    Args:
        adjacency, logit_weights: as for `influence`.
        is_error, is_input: which nodes are error nodes and input nodes.
    Returns:
        replacement: the inputs' total influence / (the inputs' + the error nodes' total influence).
        completeness: with A the row-normalised |adjacency| and o = influence + logit_weights per node,
        Σ o · (1 − the share of each node's incoming |edges| from error nodes) / Σ o.
    """
    A = adjacency.abs()
    A = A / A.sum(1, keepdim=True).clamp(min=1e-10)
    scores = influence(adjacency, logit_weights)
    inputs, errors = scores[is_input].sum(), scores[is_error].sum()
    output = scores + logit_weights
    completeness = ((1 - A[:, is_error].sum(1)) * output).sum() / output.sum()
    return (inputs / (inputs + errors)).item(), completeness.item()


def predicted_change(
    adjacency: Float[Tensor, "nodes nodes"],
    activations: Float[Tensor, " feature"],
    nodes: list[int],
    factor: float,
    target: int,
) -> float:
    """The change of node ``target`` the graph predicts when the features ``nodes`` are multiplied by ``factor``.

    Args:
        adjacency: adjacency[t, s], the direct effect of node s (at its full activation) on t; the first
            len(activations) nodes are features.
        activations: each feature's activation on the prompt.
        nodes: indices of the features intervened on (held at factor × their activation).
        factor: 0 ablates them, 2 doubles them.
        target: the node read out (a logit node).
    Returns:
        Σ_s adjacency[target, s] · r_s, with r_s each node's relative change: factor − 1 for the intervened features;
        for every other feature, (Σ_u adjacency[s, u] · r_u) / its activation (a feature is linear in its
        pre-activation while it stays active); 0 for error and input nodes. Propagate until nothing changes.
    """
    n = len(activations)
    r0 = torch.zeros(len(adjacency))
    r0[nodes] = factor - 1.0
    r = r0.clone()
    while True:
        new = r0.clone()
        downstream = adjacency[:n] @ r / activations
        keep = torch.ones(n, dtype=torch.bool)
        keep[nodes] = False
        new[:n][keep] = downstream[keep]
        if torch.equal(new, r):
            return float(adjacency[target] @ r)
        r = new
