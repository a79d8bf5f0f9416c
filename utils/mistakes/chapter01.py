"""Plausible wrong implementations of chapter 01's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``.
"""

import einops
import torch


def _hidden(W, x):
    return einops.einsum(W, x, "inst h f, batch inst f -> batch inst h")


def toy_forward__no_relu(W, b, x):
    return einops.einsum(W, _hidden(W, x), "inst h f, batch inst h -> batch inst f") + b


def toy_forward__bias_after_relu(W, b, x):
    return torch.relu(einops.einsum(W, _hidden(W, x), "inst h f, batch inst h -> batch inst f")) + b


def toy_forward__no_bias(W, b, x):
    return torch.relu(einops.einsum(W, _hidden(W, x), "inst h f, batch inst h -> batch inst f"))


def toy_forward__W_not_transposed(W, b, x):
    # W W x instead of Wᵀ W x: only has the right shape when W is square, and then the wrong values
    return torch.relu(einops.einsum(W, _hidden(W, x), "inst f h, batch inst h -> batch inst f") + b)


def generate_batch__probability_inverted(n_batch, feature_probability, generator=None):
    shape = (n_batch, *feature_probability.shape)
    values = torch.rand(shape, generator=generator)
    return torch.where(torch.rand(shape, generator=generator) < 1 - feature_probability, values, 0.0)


def generate_batch__never_zeroed(n_batch, feature_probability, generator=None):
    return torch.rand((n_batch, *feature_probability.shape), generator=generator)


def generate_batch__presence_mask_only(n_batch, feature_probability, generator=None):
    shape = (n_batch, *feature_probability.shape)
    return (torch.rand(shape, generator=generator) < feature_probability).float()


def generate_batch__gaussian_values(n_batch, feature_probability, generator=None):
    shape = (n_batch, *feature_probability.shape)
    values = torch.randn(shape, generator=generator).abs()
    return torch.where(torch.rand(shape, generator=generator) < feature_probability, values, 0.0)


def generate_batch__same_uniform_for_value_and_mask(n_batch, feature_probability, generator=None):
    # reusing one draw for presence and value: present values are then uniform on [0, p), not [0, 1)
    values = torch.rand((n_batch, *feature_probability.shape), generator=generator)
    return torch.where(values < feature_probability, values, 0.0)


def importance_weighted_loss__unweighted(x, x_hat, importance):
    return ((x - x_hat) ** 2).mean(0).sum(-1)


def importance_weighted_loss__mean_over_features(x, x_hat, importance):
    return (importance * (x - x_hat) ** 2).mean(0).mean(-1)


def importance_weighted_loss__absolute_error(x, x_hat, importance):
    return (importance * (x - x_hat).abs()).mean(0).sum(-1)


def importance_weighted_loss__sum_over_batch(x, x_hat, importance):
    return (importance * (x - x_hat) ** 2).sum(0).sum(-1)


def _overlaps(W, normalise=True):
    W_hat = W / W.norm(dim=1, keepdim=True) if normalise else W
    return einops.einsum(W_hat, W, "inst h i, inst h j -> inst i j")


def feature_interference__includes_self(W):
    return (_overlaps(W) ** 2).sum(-1)


def feature_interference__unnormalised(W):
    overlaps = _overlaps(W, normalise=False) ** 2
    return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)


def feature_interference__no_square(W):
    overlaps = _overlaps(W).abs()
    return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)


def feature_interference__normalises_the_wrong_side(W):
    overlaps = _overlaps(W).transpose(-1, -2) ** 2  # Ŵ_j·W_i instead of Ŵ_i·W_j
    return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)


def feature_dimensionality__no_square(W):
    return W.norm(dim=1) ** 2 / _overlaps(W).abs().sum(-1)


def feature_dimensionality__unnormalised(W):
    return W.norm(dim=1) ** 2 / (_overlaps(W, normalise=False) ** 2).sum(-1)


def feature_dimensionality__excludes_self(W):
    overlaps = _overlaps(W) ** 2
    return W.norm(dim=1) ** 2 / (overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1))


def feature_dimensionality__norm_not_squared(W):
    return W.norm(dim=1) / (_overlaps(W) ** 2).sum(-1)


def _pairs(x):
    return einops.rearrange(x, "batch inst pairs two -> batch inst (pairs two)")


def generate_correlated_batch__pairs_independent(n_batch, feature_probability, generator=None):
    shape = (n_batch, *feature_probability.shape, 2)
    present = torch.rand(shape, generator=generator) < feature_probability[..., None]  # one draw per feature
    return _pairs(torch.where(present, torch.rand(shape, generator=generator), 0.0))


def generate_correlated_batch__same_value_for_pair(n_batch, feature_probability, generator=None):
    shape = (n_batch, *feature_probability.shape)
    values = torch.rand(shape, generator=generator)
    x = torch.where(torch.rand(shape, generator=generator) < feature_probability, values, 0.0)
    return _pairs(torch.stack([x, x], dim=-1))


def generate_correlated_batch__pairs_as_halves(n_batch, feature_probability, generator=None):
    # pair k as features k and k + pairs instead of 2k and 2k + 1
    shape = (n_batch, *feature_probability.shape)
    present = torch.rand(shape, generator=generator) < feature_probability
    x = torch.where(present[..., None], torch.rand((*shape, 2), generator=generator), 0.0)
    return einops.rearrange(x, "batch inst pairs two -> batch inst (two pairs)")


def generate_anticorrelated_batch__both_allowed(n_batch, feature_probability, generator=None):
    shape = (n_batch, *feature_probability.shape, 2)
    present = torch.rand(shape, generator=generator) < feature_probability[..., None]
    return _pairs(torch.where(present, torch.rand(shape, generator=generator), 0.0))


def generate_anticorrelated_batch__pair_probability_not_doubled(n_batch, feature_probability, generator=None):
    # the pair is active with probability p, so each feature only with p / 2
    shape = (n_batch, *feature_probability.shape)
    active = torch.rand(shape, generator=generator) < feature_probability
    first = torch.rand(shape, generator=generator) < 0.5
    present = torch.stack([active & first, active & ~first], dim=-1)
    return _pairs(torch.where(present, torch.rand((*shape, 2), generator=generator), 0.0))


def generate_anticorrelated_batch__second_only_if_first_absent(n_batch, feature_probability, generator=None):
    # never both, but the second feature is present with p (1 - p), not p
    shape = (n_batch, *feature_probability.shape)
    first = torch.rand(shape, generator=generator) < feature_probability
    second = ~first & (torch.rand(shape, generator=generator) < feature_probability)
    present = torch.stack([first, second], dim=-1)
    return _pairs(torch.where(present, torch.rand((*shape, 2), generator=generator), 0.0))


def neuron_forward__no_hidden_relu(W, b, x):
    return torch.relu(einops.einsum(W, _hidden(W, x), "inst h f, batch inst h -> batch inst f") + b)


def neuron_forward__no_output_relu(W, b, x):
    return einops.einsum(W, torch.relu(_hidden(W, x)), "inst h f, batch inst h -> batch inst f") + b


def neuron_forward__bias_after_relu(W, b, x):
    return torch.relu(einops.einsum(W, torch.relu(_hidden(W, x)), "inst h f, batch inst h -> batch inst f")) + b
