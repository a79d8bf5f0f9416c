"""Chapter 01's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/01_superposition.ipynb`; the
checks (`utils/chapter01.py`) compare a learner's function with these on fixed cases. The toy models
and their training loop (`utils/toy_models.py`) are built on them.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Float
from torch import Tensor


def toy_forward(
    W: Float[Tensor, "inst d_hidden feats"], b: Float[Tensor, "inst feats"], x: Float[Tensor, "batch inst feats"]
) -> Float[Tensor, "batch inst feats"]:
    """x' = ReLU(Wᵀ W x + b), separately for each instance.

    Args:
        W: the weights, one m × n matrix per instance (m = d_hidden hidden dims, n = feats features).
        b: the output bias, one per instance and feature.
        x: a batch of inputs.
    Returns:
        The reconstruction x', same shape as x.
    """
    hidden = einops.einsum(W, x, "inst d_hidden feats, batch inst feats -> batch inst d_hidden")
    out = einops.einsum(W, hidden, "inst d_hidden feats, batch inst d_hidden -> batch inst feats")
    return torch.relu(out + b)


def generate_batch(
    n_batch: int, feature_probability: Float[Tensor, "inst feats"], generator: torch.Generator | None = None
) -> Float[Tensor, "batch inst feats"]:
    """Sparse inputs: x[:, k, i] is uniform on [0, 1) with probability feature_probability[k, i], else 0.

    Args:
        n_batch: how many inputs per instance.
        feature_probability: p = 1 - S for every instance and feature.
        generator: the torch.Generator to draw from (None: torch's global one).
    Returns:
        A float32 tensor of shape (n_batch, inst, feats).
    """
    shape = (n_batch, *feature_probability.shape)
    values = torch.rand(shape, generator=generator)
    present = torch.rand(shape, generator=generator) < feature_probability
    return torch.where(present, values, 0.0)


def importance_weighted_loss(
    x: Float[Tensor, "batch inst feats"], x_hat: Float[Tensor, "batch inst feats"], importance: Float[Tensor, "inst feats"]
) -> Float[Tensor, " inst"]:
    """L[k] = mean over the batch of sum_i importance[k, i] * (x[:, k, i] - x_hat[:, k, i])**2."""
    return einops.reduce(importance * (x - x_hat) ** 2, "batch inst feats -> inst feats", "mean").sum(-1)


def feature_interference(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst feats"]:
    """Superposition of each feature: sum over j != i of (Ŵ_i · W_j)**2, with Ŵ_i = W_i / ||W_i||.

    W_i is column i of W[k] (shape d_hidden). 0 when W_i is orthogonal to every other column.
    """
    W_hat = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)  # a zero column (a feature left out) overlaps nothing
    overlaps = einops.einsum(W_hat, W, "inst d_hidden f_i, inst d_hidden f_j -> inst f_i f_j") ** 2
    return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)


def feature_dimensionality(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst feats"]:
    """D_i = ||W_i||² / sum_j (Ŵ_i · W_j)², the sum over all j including i, with Ŵ_i = W_i / ||W_i||.

    W_i is column i of W[k] (shape d_hidden). You may assume no column is exactly zero.
    """
    W_hat = W / W.norm(dim=1, keepdim=True)
    overlaps = einops.einsum(W_hat, W, "inst d_hidden f_i, inst d_hidden f_j -> inst f_i f_j") ** 2
    return W.norm(dim=1) ** 2 / overlaps.sum(-1)


def generate_correlated_batch(
    n_batch: int, feature_probability: Float[Tensor, "inst pairs"], generator: torch.Generator | None = None
) -> Float[Tensor, "batch inst feats"]:
    """Pairs of features that are both present or both absent (feats = 2 * pairs).

    Args:
        n_batch: how many inputs per instance.
        feature_probability: p for each instance and pair: the chance the pair (both its features) is present.
        generator: the torch.Generator to draw from (None: torch's global one).
    Returns:
        A float32 tensor of shape (n_batch, inst, 2 * pairs); features 2k and 2k+1 are pair k. Present
        values are independent uniform draws on [0, 1).
    """
    shape = (n_batch, *feature_probability.shape)
    present = torch.rand(shape, generator=generator) < feature_probability
    values = torch.rand((*shape, 2), generator=generator)
    x = torch.where(present[..., None], values, 0.0)
    return einops.rearrange(x, "batch inst pairs two -> batch inst (pairs two)")


def generate_anticorrelated_batch(
    n_batch: int, feature_probability: Float[Tensor, "inst pairs"], generator: torch.Generator | None = None
) -> Float[Tensor, "batch inst feats"]:
    """Pairs of features that are never present together (feats = 2 * pairs).

    Args:
        n_batch: how many inputs per instance.
        feature_probability: p <= 1/2 for each instance and pair: the chance each feature of the pair is present.
        generator: the torch.Generator to draw from (None: torch's global one).
    Returns:
        A float32 tensor of shape (n_batch, inst, 2 * pairs); features 2k and 2k+1 are pair k, and at
        most one of them is non-zero. Present values are uniform on [0, 1).
    """
    shape = (n_batch, *feature_probability.shape)
    pair_present = torch.rand(shape, generator=generator) < 2 * feature_probability
    first = torch.rand(shape, generator=generator) < 0.5
    present = torch.stack([pair_present & first, pair_present & ~first], dim=-1)
    values = torch.rand((*shape, 2), generator=generator)
    x = torch.where(present, values, 0.0)
    return einops.rearrange(x, "batch inst pairs two -> batch inst (pairs two)")


def neuron_forward(
    W: Float[Tensor, "inst d_hidden feats"], b: Float[Tensor, "inst feats"], x: Float[Tensor, "batch inst feats"]
) -> Float[Tensor, "batch inst feats"]:
    """x' = ReLU(Wᵀ ReLU(W x) + b), separately for each instance (d_hidden = number of neurons).

    Args:
        W: the weights, one m × n matrix per instance; row n is neuron n's weight for each feature.
        b: the output bias, one per instance and feature.
        x: a batch of inputs.
    Returns:
        The reconstruction x', same shape as x.
    """
    hidden = torch.relu(einops.einsum(W, x, "inst d_hidden feats, batch inst feats -> batch inst d_hidden"))
    out = einops.einsum(W, hidden, "inst d_hidden feats, batch inst d_hidden -> batch inst feats")
    return torch.relu(out + b)
