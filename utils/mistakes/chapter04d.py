"""Plausible wrong implementations of section 04d's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``; each docstring completes "This is what you get when …",
which a learner whose output matches the mistake reads in the check's message.
"""

import torch


def _halves(labels, latent_dim):
    first_group = (labels < 5).float()[:, None]
    first_half = (torch.arange(latent_dim) < latent_dim // 2).float()
    return first_group, first_half


def routing_mask__halves_swapped(labels, latent_dim):
    """the halves are swapped: digits 0–4 are routed to the second half and 5–9 to the first."""
    first_group, first_half = _halves(labels, latent_dim)
    return first_group * (1 - first_half) + (1 - first_group) * first_half


def routing_mask__boundary_at_5(labels, latent_dim):
    """digit 5 joins the first group (`labels <= 5` instead of `labels < 5`)."""
    first_group = (labels <= 5).float()[:, None]
    first_half = (torch.arange(latent_dim) < latent_dim // 2).float()
    return first_group * first_half + (1 - first_group) * (1 - first_half)


def routing_mask__only_first_group(labels, latent_dim):
    """the second group is forgotten: digits 5–9 get a mask of zeros, so no gradient reaches their encoding at all."""
    first_group, first_half = _halves(labels, latent_dim)
    return first_group * first_half


def routing_mask__boolean(labels, latent_dim):
    """the mask is boolean (True/False) instead of float zeros and ones."""
    first_group, first_half = _halves(labels, latent_dim)
    return (first_group * first_half + (1 - first_group) * (1 - first_half)).bool()


def route_gradients__mask_times_h(h, mask):
    """the other half is multiplied away (`mask * h`): the gradient is routed, but the forward value changes too."""
    return mask * h


def route_gradients__same_mask_twice(h, mask):
    """both terms use the mask (`mask·h + mask·h.detach()`): outside the mask the value is no longer h."""
    return mask * h + mask * h.detach()


def routed_gradient__detach_wrong_part(h, mask, upstream):
    """the gradient goes back through a routing whose detach is on the wrong term."""
    with torch.enable_grad():
        h = h.detach().clone().requires_grad_(True)
        routed = (1 - mask) * h + mask * h.detach()  # the gradient flows where the mask is 0
        (routed * upstream).sum().backward()
    return h.grad


def routed_gradient__no_routing(h, mask, upstream):
    """the gradient is taken through h itself, not through the routed tensor: it equals upstream everywhere."""
    with torch.enable_grad():
        h = h.detach().clone().requires_grad_(True)
        (h * upstream).sum().backward()
    return h.grad


def routed_gradient__everything_detached(h, mask, upstream):
    """nothing that reaches h is left in the graph: the gradient is zero everywhere."""
    with torch.enable_grad():
        h = h.detach().clone().requires_grad_(True)
        routed = mask * h.detach() + (1 - mask) * h.detach()
        out = (routed * upstream).sum()
        return torch.autograd.grad(out, h, allow_unused=True, materialize_grads=True)[0]


def group_losses__divided_by_batch(x, x_hat, groups, n_groups):
    """each group's summed error is divided by the whole batch size instead of that group's own size."""
    per_image = ((x - x_hat) ** 2).mean(-1)
    return torch.stack([per_image[groups == k].sum() for k in range(n_groups)]) / len(x)


def group_losses__sum_over_pixels(x, x_hat, groups, n_groups):
    """the squared errors are summed over the pixels instead of averaged."""
    per_image = ((x - x_hat) ** 2).sum(-1)
    return torch.stack([per_image[groups == k].mean() for k in range(n_groups)])


def group_losses__absolute_error(x, x_hat, groups, n_groups):
    """the errors are absolute, not squared."""
    per_image = (x - x_hat).abs().mean(-1)
    return torch.stack([per_image[groups == k].mean() for k in range(n_groups)])


def keep_half__zeroes_the_kept_half(z, half):
    """the wrong half is zeroed: half 0 keeps the second half."""
    in_first = torch.arange(z.shape[-1]) < z.shape[-1] // 2
    keep = ~in_first if half == 0 else in_first
    return z * keep.to(z.dtype)


def keep_half__slices(z, half):
    """the other half is sliced away instead of zeroed, so the shape changes."""
    d = z.shape[-1] // 2
    return z[:, :d] if half == 0 else z[:, d:]


def route_gradients__detach_wrong_part(h, mask):
    """the detach is on the wrong term: the gradient flows where the mask is 0 and is blocked where it is 1."""
    return (1 - mask) * h + mask * h.detach()


def route_gradients__detach_everything(h, mask):
    """everything is detached: the value is right, but no gradient reaches h anywhere."""
    return h.detach()
