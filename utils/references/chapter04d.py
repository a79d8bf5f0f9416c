"""Section 04d's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/04d_gradient_routing.ipynb`;
the checks (`utils/chapter04d.py`) compare a learner's function with these on fixed cases, and the
section's training loops default to them.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor


def routing_mask(labels: Int[Tensor, " batch"], latent_dim: int) -> Float[Tensor, "batch latent"]:
    """1.0 where an image's gradient may flow: the first half of the encoding for digits 0–4, the second for 5–9.

    Args:
        labels: the digit (0..9) of each image.
        latent_dim: the size d of the encoding (even); the first half is dims [0, d/2).
    Returns:
        A float32 0/1 mask of shape [batch, latent_dim].
    """
    first_group = (labels < 5).float()[:, None]  # [batch, 1]
    first_half = (torch.arange(latent_dim) < latent_dim // 2).float()  # [latent]
    return first_group * first_half + (1 - first_group) * (1 - first_half)


def route_gradients(h: Float[Tensor, "batch latent"], mask: Float[Tensor, "batch latent"]) -> Float[Tensor, "batch latent"]:
    """The same values as h; gradients flow back to h only where mask is 1."""
    return mask * h + (1 - mask) * h.detach()


def routed_gradient(
    h: Float[Tensor, "batch latent"], mask: Float[Tensor, "batch latent"], upstream: Float[Tensor, "batch latent"]
) -> Float[Tensor, "batch latent"]:
    """d/dh of sum(route_gradients(h, mask) * upstream): the gradient that reaches h through your routing."""
    with torch.enable_grad():
        h = h.detach().clone().requires_grad_(True)
        (route_gradients(h, mask) * upstream).sum().backward()
    return h.grad


def group_losses(
    x: Float[Tensor, "batch pixels"], x_hat: Float[Tensor, "batch pixels"], groups: Int[Tensor, " batch"], n_groups: int
) -> Float[Tensor, " n_groups"]:
    """Mean (over the images of each group) of the per-image mean squared error; shape [n_groups]."""
    per_image = ((x - x_hat) ** 2).mean(-1)  # [batch]
    one_hot = torch.nn.functional.one_hot(groups, n_groups).float()  # [batch, n_groups]
    return einops.einsum(one_hot, per_image, "batch g, batch -> g") / one_hot.sum(0)


def keep_half(z: Float[Tensor, "batch latent"], half: int) -> Float[Tensor, "batch latent"]:
    """z with the other half of its last dimension set to 0 (half 0 keeps the first half, half 1 the second)."""
    latent_dim = z.shape[-1]
    in_first = torch.arange(latent_dim) < latent_dim // 2
    keep = in_first if half == 0 else ~in_first
    return z * keep.to(z.dtype)
