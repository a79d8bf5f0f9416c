"""Plausible wrong implementations of chapter 04d's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``.
"""

import torch


def _halves(labels, latent_dim):
    first_group = (labels < 5).float()[:, None]
    first_half = (torch.arange(latent_dim) < latent_dim // 2).float()
    return first_group, first_half


def routing_mask__halves_swapped(labels, latent_dim):
    first_group, first_half = _halves(labels, latent_dim)
    return first_group * (1 - first_half) + (1 - first_group) * first_half


def routing_mask__boundary_at_5(labels, latent_dim):
    # digits 0–5 routed to the first half: "< 5" written as "<= 5"
    first_group = (labels <= 5).float()[:, None]
    first_half = (torch.arange(latent_dim) < latent_dim // 2).float()
    return first_group * first_half + (1 - first_group) * (1 - first_half)


def routing_mask__only_first_group(labels, latent_dim):
    # forgot the second group: digits 5–9 get an all-zero mask (no gradient at all)
    first_group, first_half = _halves(labels, latent_dim)
    return first_group * first_half


def routing_mask__boolean(labels, latent_dim):
    first_group, first_half = _halves(labels, latent_dim)
    return (first_group * first_half + (1 - first_group) * (1 - first_half)).bool()


def route_gradients__mask_times_h(h, mask):
    # zeroes the forward value of the other half instead of only its gradient
    return mask * h


def route_gradients__same_mask_twice(h, mask):
    return mask * h + mask * h.detach()


def routed_gradient__detach_wrong_part(h, mask, upstream):
    with torch.enable_grad():
        h = h.detach().clone().requires_grad_(True)
        routed = (1 - mask) * h + mask * h.detach()  # the gradient flows where the mask is 0
        (routed * upstream).sum().backward()
    return h.grad


def routed_gradient__no_routing(h, mask, upstream):
    with torch.enable_grad():
        h = h.detach().clone().requires_grad_(True)
        (h * upstream).sum().backward()
    return h.grad


def routed_gradient__everything_detached(h, mask, upstream):
    with torch.enable_grad():
        h = h.detach().clone().requires_grad_(True)
        routed = mask * h.detach() + (1 - mask) * h.detach()
        out = (routed * upstream).sum()
        return torch.autograd.grad(out, h, allow_unused=True, materialize_grads=True)[0]


def group_losses__divided_by_batch(x, x_hat, groups, n_groups):
    # the sum of a group's errors divided by the whole batch, not by the group's size
    per_image = ((x - x_hat) ** 2).mean(-1)
    return torch.stack([per_image[groups == k].sum() for k in range(n_groups)]) / len(x)


def group_losses__sum_over_pixels(x, x_hat, groups, n_groups):
    per_image = ((x - x_hat) ** 2).sum(-1)
    return torch.stack([per_image[groups == k].mean() for k in range(n_groups)])


def group_losses__absolute_error(x, x_hat, groups, n_groups):
    per_image = (x - x_hat).abs().mean(-1)
    return torch.stack([per_image[groups == k].mean() for k in range(n_groups)])


def keep_half__zeroes_the_kept_half(z, half):
    in_first = torch.arange(z.shape[-1]) < z.shape[-1] // 2
    keep = ~in_first if half == 0 else in_first
    return z * keep.to(z.dtype)


def keep_half__slices(z, half):
    d = z.shape[-1] // 2
    return z[:, :d] if half == 0 else z[:, d:]


def route_gradients__detach_wrong_part(h, mask):
    return (1 - mask) * h + mask * h.detach()


def route_gradients__detach_everything(h, mask):
    return h.detach()
