"""Section 04c's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/04c_linear_representations.ipynb`;
the checks (`utils/chapter04c.py`) compare a learner's function with these on fixed cases. ``g`` is the
causal transform of the unembedding vectors (one row per token); a concept's pairs are token ids
[pairs, 2], column 0 the base word y0, column 1 the target y1.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from utils.paths import STEER_HOOK


def causal_transform(
    W_U: Float[Tensor, "d_model d_vocab"],
) -> tuple[Float[Tensor, "d_model d_model"], Float[Tensor, " d_model"]]:
    """The whitening map of the causal inner product.

    Args:
        W_U: the unembedding matrix; column y is token y's unembedding vector γ(y).
    Returns:
        A = Cov(γ)^(-1/2) (the symmetric inverse square root) and the mean of γ over the vocabulary,
        both float64, so that g(y) = A (γ(y) - mean).
    """
    mean = W_U.mean(dim=1, dtype=torch.float64)  # the mean over tokens (W_U's columns)
    centred = W_U.T.double().sub_(mean)  # [d_vocab, d_model]: one float64 copy, centred in place
    cov = centred.T @ centred / centred.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    A = eigenvectors @ torch.diag(eigenvalues.rsqrt()) @ eigenvectors.T
    return A, mean


def concept_direction(g: Float[Tensor, "d_vocab d"], pairs: Int[Tensor, "pairs 2"]) -> Float[Tensor, " d"]:
    """The unit-norm mean of g[y1] - g[y0] over the pairs (column 0 = y0, column 1 = y1)."""
    mean_difference = (g[pairs[:, 1]] - g[pairs[:, 0]]).mean(0)
    return mean_difference / mean_difference.norm()


def inner_products(
    directions: Float[Tensor, "concepts d"], A: Float[Tensor, "d d"] | None = None
) -> Float[Tensor, "concepts concepts"]:
    """Cosine similarity of every pair of directions under <x, y> = (A x)ᵀ (A y) (Euclidean if A is None)."""
    if A is not None:
        directions = directions @ A.T  # row i becomes A x_i
    unit = directions / directions.norm(dim=-1, keepdim=True)
    return unit @ unit.T


def probe_scores(g: Float[Tensor, "d_vocab d"], pairs: Int[Tensor, "pairs 2"]) -> Float[Tensor, "pairs 2"]:
    """Leave-one-out probe: each held-out word's projection on the other pairs' direction, minus their threshold."""
    n = len(pairs)
    scores = torch.zeros(n, 2, dtype=g.dtype)
    for i in range(n):
        others = pairs[torch.arange(n) != i]
        differences = g[others[:, 1]] - g[others[:, 0]]
        direction = differences.mean(0) / differences.mean(0).norm()
        threshold = (g[others] @ direction).mean()
        scores[i] = g[pairs[i]] @ direction - threshold
    return scores


def steer(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], direction: Float[Tensor, " d_model"], alpha: float
) -> Float[Tensor, "batch d_vocab"]:
    """Logits at the last position after adding alpha * direction to the normalised final residual stream there."""
    def add_direction(normalized: Float[Tensor, "batch pos d_model"], hook) -> Float[Tensor, "batch pos d_model"]:
        normalized[:, -1] = normalized[:, -1] + alpha * direction
        return normalized

    logits = model.run_with_hooks(tokens, fwd_hooks=[(STEER_HOOK, add_direction)])
    return logits[:, -1]
