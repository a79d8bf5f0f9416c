"""Chapter 01's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/01_superposition.ipynb`; the
checks (`utils/chapter01.py`) compare a learner's function with these on fixed cases. The toy models
and their training loop (`utils/toy_models.py`) are built on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm


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


def toy_parameters(
    n_inst: int, n_features: int, d_hidden: int, generator: torch.Generator | None = None
) -> tuple[Float[Tensor, "inst d_hidden feats"], Float[Tensor, "inst feats"]]:
    """The trainable parameters of n_inst toy models side by side: W and b, each an `nn.Parameter`.

    Args:
        n_inst: how many independent models (instances).
        n_features: n, the number of features.
        d_hidden: m, the number of hidden dimensions.
        generator: the torch.Generator to draw W with (None: torch's global one).
    Returns:
        (W, b). W has shape (n_inst, d_hidden, n_features) and is Xavier-normal for each instance's m × n
        matrix: independent normal entries, mean 0, standard deviation sqrt(2 / (n_features + d_hidden)).
        b has shape (n_inst, n_features) and starts at zero. Both float32.
    """
    std = math.sqrt(2.0 / (n_features + d_hidden))
    W = torch.randn((n_inst, d_hidden, n_features), generator=generator) * std
    return nn.Parameter(W), nn.Parameter(torch.zeros(n_inst, n_features))


def optimize(
    model: nn.Module,
    feature_probability: Float[Tensor, "inst feats"],
    importance: Float[Tensor, "inst feats"],
    batch_fn: Callable[..., Tensor],
    loss_fn: Callable[..., Tensor],
    steps: int,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    decay: bool = False,
    desc: str = "training",
) -> Float[Tensor, " inst"]:
    """Train every instance of ``model`` at once with AdamW; return each instance's final loss.

    Args:
        model: maps a batch x of shape (batch, inst, feats) to its reconstruction, same shape; train all of
            `model.parameters()`.
        feature_probability: p for every instance and feature, passed on to batch_fn.
        importance: I for every instance and feature, passed on to loss_fn.
        batch_fn: batch_fn(batch_size, feature_probability, generator) gives a batch (your `generate_batch`).
        loss_fn: loss_fn(x, model(x), importance) gives one loss per instance (your `importance_weighted_loss`).
        steps: how many optimizer steps; every step draws a fresh batch.
        batch_size: inputs per batch.
        lr: AdamW's learning rate; no weight decay (weight_decay=0).
        seed: seeds the one torch.Generator every batch is drawn with.
        decay: False, a constant learning rate; True, lr * (1 - step / steps) at step = 0, 1, ..., steps - 1.
        desc: the label of the progress bar (tqdm).
    Returns:
        Each instance's loss averaged over the last 100 steps (over all of them if fewer), detached.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    recent = []
    for step in (bar := tqdm(range(steps), desc=desc, mininterval=1.0)):
        if decay:
            for group in optimizer.param_groups:
                group["lr"] = lr * (1 - step / steps)
        x = batch_fn(batch_size, feature_probability, generator)
        loss = loss_fn(x, model(x), importance)
        optimizer.zero_grad()
        loss.sum().backward()  # the instances are independent: the sum trains each on its own loss
        optimizer.step()
        if step >= steps - 100:
            recent.append(loss.detach())
        if step % 500 == 0:
            bar.set_postfix(loss=f"{loss.mean().item():.4g}")
    return torch.stack(recent).mean(0)


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


def feature_phase(W: Float[Tensor, "inst d_hidden feats"], threshold: float = 0.5) -> Int[Tensor, "inst feats"]:
    """How each feature is stored: 0 not represented, 1 in a dimension of its own, 2 in superposition.

    Feature i is represented when ||W_i|| > threshold. A represented feature is in superposition when the
    other features reach into its direction: when their projections on it, Ŵ_i · W_j for j != i (with
    Ŵ_i = W_i / ||W_i||), have a norm sqrt(sum over j != i of (Ŵ_i · W_j)**2) above threshold too. W_i is
    column i of W[k] (shape d_hidden).

    Returns:
        A torch.long tensor of 0, 1 and 2, one per instance and feature.
    """
    norms = W.norm(dim=1)
    W_hat = W / norms.clamp_min(1e-12)[:, None, :]  # a zero column (a feature left out) overlaps nothing
    overlaps = einops.einsum(W_hat, W, "inst d_hidden f_i, inst d_hidden f_j -> inst f_i f_j") ** 2
    reach = (overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)).clamp_min(0).sqrt()
    return torch.where(norms > threshold, torch.where(reach > threshold, 2, 1), 0)
