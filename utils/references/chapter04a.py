"""Section 04a's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/04a_feature_circuits.ipynb`;
the checks (`utils/chapter04a.py`) compare a learner's function with these on fixed cases, and the
feature-circuit machinery (`utils/feature_circuits.py`) is built on them. Node activations of one
layer are a dict ``{"latents": [batch, pos, d_sae], "error": [batch, pos, d_model]}``; a layer's node
scores are a vector ``[d_sae + 1]`` whose last entry is the error node.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def logit_diff(
    logits: Float[Tensor, "batch pos vocab"], correct: Int[Tensor, " batch"], wrong: Int[Tensor, " batch"]
) -> Float[Tensor, " batch"]:
    """Per prompt: the last position's logit of `correct[b]` minus that of `wrong[b]`.

    Args:
        logits: the model's output logits.
        correct, wrong: one token id per prompt.
    Returns:
        A tensor of shape [batch].
    """
    last = logits[:, -1]
    rows = torch.arange(len(last))
    return last[rows, correct] - last[rows, wrong]


def attribution(grad: dict[str, Tensor], clean: dict[str, Tensor], patch: dict[str, Tensor]) -> Float[Tensor, " nodes"]:
    """Attribution-patching estimate of each node's indirect effect on the mean metric.

    Args:
        grad, clean, patch: dicts {"latents": [batch, pos, d_sae], "error": [batch, pos, d_model]}: the metric's
            gradient (per prompt), the clean and the corrupted node activations.
    Returns:
        [d_sae + 1]: per latent, grad · (patch − clean) summed over positions and averaged over prompts;
        last, the error node's score, the same with the dot product over d_model.
    """
    latents = (grad["latents"] * (patch["latents"] - clean["latents"])).sum(1).mean(0)
    error = (grad["error"] * (patch["error"] - clean["error"])).sum((1, 2)).mean(0)
    return torch.cat([latents, error[None]])


def integrated_gradients(grad_fn, clean: dict[str, Tensor], patch: dict[str, Tensor], steps: int) -> Float[Tensor, " nodes"]:
    """Integrated-gradients estimate of each node's indirect effect (the paper's left Riemann sum).

    Args:
        grad_fn: maps a nodes dict of tensors [steps, batch, pos, ...] (points on the path) to the metric's
            gradients at those points, a dict of the same shapes.
        clean, patch: nodes dicts {"latents": [batch, pos, d_sae], "error": [batch, pos, d_model]}.
        steps: N, the number of points; alpha = k / N for k = 0, ..., N − 1.
    Returns:
        [d_sae + 1] scores, as `attribution` returns them, with the gradient averaged over the path.
    """
    alphas = torch.arange(steps) / steps
    points = {}
    for name in clean:
        shape = (steps,) + (1,) * clean[name].ndim
        points[name] = clean[name] + alphas.view(shape) * (patch[name] - clean[name])
    grads = grad_fn(points)
    return attribution({name: g.mean(0) for name, g in grads.items()}, clean, patch)


def top_nodes(scores: dict[int, Float[Tensor, " nodes"]], n: int) -> dict[int, Bool[Tensor, " nodes"]]:
    """The n nodes with the largest |score| across all layers, as one boolean mask per layer.

    Args:
        scores: layer -> [nodes_in_layer] effect estimates (the last node of a layer is its error node).
        n: how many nodes to keep in total.
    Returns:
        layer -> [nodes_in_layer] bool mask, True for kept nodes; the keys are those of `scores`.
    """
    flat = torch.cat([scores[layer] for layer in scores]).abs()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(n).indices] = True
    masks, start = {}, 0
    for layer in scores:
        masks[layer] = keep[start : start + len(scores[layer])]
        start += len(scores[layer])
    return masks


def mean_ablate(acts: dict[str, Tensor], mean: dict[str, Tensor], keep: Bool[Tensor, " nodes"]) -> dict[str, Tensor]:
    """Replace the nodes outside the circuit by their mean activation.

    Args:
        acts: {"latents": [batch, pos, d_sae], "error": [batch, pos, d_model]}, this run's nodes.
        mean: {"latents": [pos, d_sae], "error": [pos, d_model]}, each node's mean over the clean prompts.
        keep: [d_sae + 1] bool, True for nodes in the circuit; keep[-1] is the error node.
    Returns:
        A nodes dict shaped like `acts`: kept nodes as in `acts`, the others equal to `mean` for every prompt.
    """
    latents = torch.where(keep[:-1], acts["latents"], mean["latents"])
    error = acts["error"] if keep[-1] else mean["error"].expand_as(acts["error"])
    return {"latents": latents, "error": error}


def faithfulness(m_circuit: Float[Tensor, " circuits"], m_empty: float, m_full: float) -> Float[Tensor, " circuits"]:
    """(m(C) − m(∅)) / (m(M) − m(∅)) for each circuit's metric m(C)."""
    return (m_circuit - m_empty) / (m_full - m_empty)
