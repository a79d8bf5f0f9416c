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
    """Where each image's gradient may reach its encoding: the first half for digits 0–4, the second for 5–9.

    Args:
        labels: the digit (0..9) of each image.
        latent_dim: the size d of the encoding (even); the first half is dims [0, d/2).
    Returns:
        A float32 mask of shape [batch, latent_dim]: 1.0 in the half of the image's group, 0.0 in the
        other, so every row has d/2 ones. Labels [2, 7] with latent_dim 4 give [[1, 1, 0, 0], [0, 0, 1, 1]].
    """
    first_group = (labels < 5).float()[:, None]  # [batch, 1]
    first_half = (torch.arange(latent_dim) < latent_dim // 2).float()  # [latent]
    return first_group * first_half + (1 - first_group) * (1 - first_half)


def route_gradients(h: Float[Tensor, "batch latent"], mask: Float[Tensor, "batch latent"]) -> Float[Tensor, "batch latent"]:
    """h as the decoder should read it: exactly h's values, but a gradient that is masked on its way back.

    Args:
        h: the encoding; mask: 0/1, the same shape (from routing_mask).
    Returns:
        A tensor equal to h, shape [batch, latent]. If a gradient g arrives at it in the backward pass,
        mask * g reaches h (and the encoder behind it); where the mask is 0, nothing does. E.g. h [[0.5, -1.0]]
        and mask [[1, 0]]: the value is [[0.5, -1.0]], and a gradient [[3, 4]] arriving reaches h as [[3, 0]].
    """
    return mask * h + (1 - mask) * h.detach()


def routed_gradient(
    h: Float[Tensor, "batch latent"], mask: Float[Tensor, "batch latent"], upstream: Float[Tensor, "batch latent"]
) -> Float[Tensor, "batch latent"]:
    """The gradient that reaches h when the gradient `upstream` arrives at your route_gradients(h, mask).

    Found by running autograd's backward pass through your routing (not by writing down what it should be),
    so that it tests the routing. It must also work when gradients are switched off around the call
    (inside torch.no_grad()), and must leave the caller's h unchanged.

    Args:
        h: the encoding; mask: the 0/1 routing mask; upstream: dL/d(routed tensor), from the decoder.
    Returns:
        dL/dh, shape [batch, latent]. For a correct routing it is upstream where the mask is 1 and 0 where
        it is 0, whatever h is: mask [[1, 0, 1]] and upstream [[2, 5, -1]] give [[2, 0, -1]].
    """
    with torch.enable_grad():
        h = h.detach().clone().requires_grad_(True)
        (route_gradients(h, mask) * upstream).sum().backward()
    return h.grad


def group_losses(
    x: Float[Tensor, "batch pixels"], x_hat: Float[Tensor, "batch pixels"], groups: Int[Tensor, " batch"], n_groups: int
) -> Float[Tensor, " n_groups"]:
    """The reconstruction error of each group: the mean, over the group's images, of each image's MSE.

    Args:
        x, x_hat: the images and their reconstructions; groups: each image's group id in range(n_groups)
        (every group has at least one image; groups can differ in size).
    Returns:
        Shape [n_groups]. Three images with per-image MSEs 0.1, 0.3 and 0.2 in groups [0, 0, 1] give
        [0.2, 0.2]: each group is averaged over its own images, so a small group counts as much as a big one.
    """
    per_image = ((x - x_hat) ** 2).mean(-1)  # [batch]
    one_hot = torch.nn.functional.one_hot(groups, n_groups).float()  # [batch, n_groups]
    return einops.einsum(one_hot, per_image, "batch g, batch -> g") / one_hot.sum(0)


def keep_half(z: Float[Tensor, "batch latent"], half: int) -> Float[Tensor, "batch latent"]:
    """z with one half of its last dimension kept and the other half set to 0; the shape does not change.

    half 0 keeps dims [0, d/2), half 1 keeps [d/2, d). z itself is left as it was (return a new tensor).
    Example: z [[1, 2, 3, 4]] gives [[1, 2, 0, 0]] for half 0 and [[0, 0, 3, 4]] for half 1.
    """
    latent_dim = z.shape[-1]
    in_first = torch.arange(latent_dim) < latent_dim // 2
    keep = in_first if half == 0 else ~in_first
    return z * keep.to(z.dtype)
