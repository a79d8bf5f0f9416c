"""Plausible wrong implementations of chapter 05's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``; each docstring completes "This is what you get when …",
which a learner whose output matches the mistake reads in the check's message.
"""

import einops
import torch

from utils.references.chapter05 import influence


def _topk(pre, k, relu=True):
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values) if relu else values)


def transcoder_forward__input_bias(params, x, k):
    """b_dec is subtracted from the input first, as an SAE does: a transcoder's b_dec lives in the output space."""
    acts = _topk((x - params["b_dec"]) @ params["W_enc"] + params["b_enc"], k)
    return acts, acts @ params["W_dec"] + params["b_dec"]


def transcoder_forward__no_relu(params, x, k):
    """the k largest pre-activations are kept as they are, negative ones included, instead of ReLU'd."""
    acts = _topk(x @ params["W_enc"] + params["b_enc"], k, relu=False)
    return acts, acts @ params["W_dec"] + params["b_dec"]


def transcoder_forward__relu_no_topk(params, x, k):
    """every positive pre-activation is kept (a ReLU transcoder), not only the k largest."""
    acts = torch.relu(x @ params["W_enc"] + params["b_enc"])
    return acts, acts @ params["W_dec"] + params["b_dec"]


def transcoder_forward__no_output_bias(params, x, k):
    """the output leaves out b_dec."""
    acts = _topk(x @ params["W_enc"] + params["b_enc"], k)
    return acts, acts @ params["W_dec"]


def frozen_attention__scale_multiplied(resid, scale, pattern, W_V, W_O):
    """the residual stream is multiplied by the norm's denominator instead of divided by it."""
    v = einops.einsum(resid * scale, W_V, "k d, h d e -> h k e")
    return einops.einsum(einops.einsum(pattern, v, "h q k, h k e -> h q e"), W_O, "h q e, h e d -> q d")


def frozen_attention__pattern_transposed(resid, scale, pattern, W_V, W_O):
    """the pattern is read as [head, key, query]: each position mixes the positions that read it."""
    v = einops.einsum(resid / scale, W_V, "k d, h d e -> h k e")
    return einops.einsum(einops.einsum(pattern.transpose(1, 2), v, "h q k, h k e -> h q e"), W_O, "h q e, h e d -> q d")


def frozen_attention__no_norm(resid, scale, pattern, W_V, W_O):
    """the norm is left out: the values are read from the raw residual stream."""
    v = einops.einsum(resid, W_V, "k d, h d e -> h k e")
    return einops.einsum(einops.einsum(pattern, v, "h q k, h k e -> h q e"), W_O, "h q e, h e d -> q d")


def frozen_attention__heads_averaged(resid, scale, pattern, W_V, W_O):
    """the heads' outputs are averaged instead of summed."""
    v = einops.einsum(resid / scale, W_V, "k d, h d e -> h k e")
    return einops.einsum(einops.einsum(pattern, v, "h q k, h k e -> h q e"), W_O, "h q e, h e d -> q d") / len(W_V)


def direct_effects__errors_position_major(grad_mlp, grad_in, features, decoder_vecs, errors, resid_in):
    """the error nodes are ordered position by position (then layer) instead of band layer by band layer."""
    feature_cols = (grad_mlp[:, features[:, 0], features[:, 1]] * decoder_vecs).sum(-1)
    error_cols = (grad_mlp * errors).sum(-1).transpose(1, 2).flatten(1)
    return torch.cat([feature_cols, error_cols, (grad_in * resid_in).sum(-1)], dim=1)


def direct_effects__inputs_before_errors(grad_mlp, grad_in, features, decoder_vecs, errors, resid_in):
    """the input nodes' columns come before the error nodes' instead of after them."""
    feature_cols = (grad_mlp[:, features[:, 0], features[:, 1]] * decoder_vecs).sum(-1)
    error_cols = (grad_mlp * errors).sum(-1).flatten(1)
    return torch.cat([feature_cols, (grad_in * resid_in).sum(-1), error_cols], dim=1)


def direct_effects__last_position_gradient(grad_mlp, grad_in, features, decoder_vecs, errors, resid_in):
    """every feature is dotted with the gradient at the last position, not at the position where it writes."""
    last = torch.full_like(features[:, 1], grad_mlp.shape[2] - 1)
    feature_cols = (grad_mlp[:, features[:, 0], last] * decoder_vecs).sum(-1)
    error_cols = (grad_mlp * errors).sum(-1).flatten(1)
    return torch.cat([feature_cols, error_cols, (grad_in * resid_in).sum(-1)], dim=1)


def direct_effects__gradient_only(grad_mlp, grad_in, features, decoder_vecs, errors, resid_in):
    """the features' columns sum their gradient over d_model without the vector they write (gradient, not gradient × value)."""
    feature_cols = grad_mlp[:, features[:, 0], features[:, 1]].sum(-1)
    error_cols = (grad_mlp * errors).sum(-1).flatten(1)
    return torch.cat([feature_cols, error_cols, (grad_in * resid_in).sum(-1)], dim=1)


def _normalised(adjacency, signed=False, columns=False):
    A = adjacency if signed else adjacency.abs()
    return A / A.abs().sum(0 if columns else 1, keepdim=True).clamp(min=1e-10)


def _series(A, w):
    current, total = w @ A, torch.zeros(len(A))
    while current.any():
        total = total + current
        current = current @ A
    return total


def influence__direct_only(adjacency, logit_weights):
    """only paths of length one are counted (w A), not the longer paths through other nodes."""
    return logit_weights @ _normalised(adjacency)


def influence__signed(adjacency, logit_weights):
    """the signed edges are used, so paths of opposite signs cancel instead of both counting."""
    return _series(_normalised(adjacency, signed=True), logit_weights)


def influence__columns_normalised(adjacency, logit_weights):
    """each node's outgoing edges (a column) are scaled to sum to 1 instead of its incoming ones (a row)."""
    return _series(_normalised(adjacency, columns=True), logit_weights)


def influence__logit_weights_included(adjacency, logit_weights):
    """the logit weights themselves are added to the total (the series starts at w, not at w A)."""
    return logit_weights + _series(_normalised(adjacency), logit_weights)


def influence__not_normalised(adjacency, logit_weights):
    """|adjacency| is used without scaling each row to sum to 1."""
    return _series(adjacency.abs(), logit_weights)


def keep_by_influence__right_side(scores, fraction):
    """the index is the first where the running share *exceeds* the fraction (searchsorted right=True), so a share equal
    to it keeps one node too many."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum()
    index = min(int(torch.searchsorted(cumulative, fraction, right=True)), len(ordered) - 1)
    return scores >= ordered[index]


def keep_by_influence__strictly_greater(scores, fraction):
    """the threshold node itself is dropped (scores > threshold instead of >=)."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum()
    index = min(int(torch.searchsorted(cumulative, fraction)), len(ordered) - 1)
    return scores > ordered[index]


def keep_by_influence__fraction_of_nodes(scores, fraction):
    """the fraction is taken of the number of nodes (keep the top 80 % of nodes), not of the total influence."""
    n = max(1, int(round(fraction * len(scores))))
    return scores >= scores.sort(descending=True).values[n - 1]


def keep_by_influence__sorted_order(scores, fraction):
    """the mask is returned in sorted order instead of the nodes' own order."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum()
    index = min(int(torch.searchsorted(cumulative, fraction)), len(ordered) - 1)
    return ordered >= ordered[index]


def graph_scores__replacement_over_everything(adjacency, logit_weights, is_error, is_input):
    """the replacement score divides the inputs' influence by every node's total influence instead of inputs + errors."""
    A = _normalised(adjacency)
    scores = influence(adjacency, logit_weights)
    output = scores + logit_weights
    completeness = ((1 - A[:, is_error].sum(1)) * output).sum() / output.sum()
    return (scores[is_input].sum() / scores.sum()).item(), completeness.item()


def graph_scores__unweighted_completeness(adjacency, logit_weights, is_error, is_input):
    """completeness is a plain mean over the nodes with incoming edges, not weighted by their influence on the output."""
    A = _normalised(adjacency)
    scores = influence(adjacency, logit_weights)
    has_inputs = adjacency.abs().sum(1) > 0
    completeness = (1 - A[has_inputs][:, is_error].sum(1)).mean()
    inputs, errors = scores[is_input].sum(), scores[is_error].sum()
    return (inputs / (inputs + errors)).item(), completeness.item()


def graph_scores__without_logit_weights(adjacency, logit_weights, is_error, is_input):
    """completeness weights the nodes by their influence alone, so the logits (influence 0) do not count."""
    A = _normalised(adjacency)
    scores = influence(adjacency, logit_weights)
    completeness = ((1 - A[:, is_error].sum(1)) * scores).sum() / scores.sum()
    inputs, errors = scores[is_input].sum(), scores[is_error].sum()
    return (inputs / (inputs + errors)).item(), completeness.item()


def graph_scores__error_share_not_complemented(adjacency, logit_weights, is_error, is_input):
    """completeness averages the error share itself instead of 1 − the error share."""
    A = _normalised(adjacency)
    scores = influence(adjacency, logit_weights)
    output = scores + logit_weights
    inputs, errors = scores[is_input].sum(), scores[is_error].sum()
    return (inputs / (inputs + errors)).item(), ((A[:, is_error].sum(1) * output).sum() / output.sum()).item()


def _propagate(adjacency, activations, nodes, factor, target, clamp=True, scale=True, start=None):
    n = len(activations)
    r0 = torch.zeros(len(adjacency))
    r0[nodes] = factor - 1.0 if start is None else start
    r = r0.clone()
    for _ in range(len(adjacency) + 1):
        downstream = adjacency[:n] @ r / (activations if scale else 1.0)
        new = r0.clone()
        keep = torch.ones(n, dtype=torch.bool)
        if clamp:
            keep[nodes] = False
        new[:n][keep] = (new[:n] + downstream)[keep] if not clamp else downstream[keep]
        r = new
    return float(adjacency[target] @ r)


def predicted_change__direct_only(adjacency, activations, nodes, factor, target):
    """only the intervened features' direct edges to the target count, not the paths through downstream features."""
    return float((factor - 1.0) * adjacency[target, nodes].sum())


def predicted_change__not_per_activation(adjacency, activations, nodes, factor, target):
    """a downstream feature's change is passed on as it is, not as a fraction of its own activation."""
    return _propagate(adjacency, activations, nodes, factor, target, scale=False)


def predicted_change__factor_not_change(adjacency, activations, nodes, factor, target):
    """the intervened features are given the relative change `factor` instead of `factor − 1` (ablation would change nothing)."""
    return _propagate(adjacency, activations, nodes, factor, target, start=factor)


def predicted_change__intervened_not_held(adjacency, activations, nodes, factor, target):
    """the intervened features also take the changes of their own upstream features on top, instead of being held."""
    return _propagate(adjacency, activations, nodes, factor, target, clamp=False)
