"""Plausible wrong implementations of chapter 01's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``; each docstring completes "This is what you get when …",
which a learner whose output matches the mistake reads in the check's message.
"""

import einops
import torch


def _hidden(W, x):
    return einops.einsum(W, x, "inst h f, batch inst f -> batch inst h")


def toy_forward__no_relu(W, b, x):
    """the ReLU is left out, so negative outputs are not clipped to 0."""
    return einops.einsum(W, _hidden(W, x), "inst h f, batch inst h -> batch inst f") + b


def toy_forward__bias_after_relu(W, b, x):
    """the bias is added after the ReLU instead of inside it, so outputs can be negative."""
    return torch.relu(einops.einsum(W, _hidden(W, x), "inst h f, batch inst h -> batch inst f")) + b


def toy_forward__no_bias(W, b, x):
    """the bias b is left out."""
    return torch.relu(einops.einsum(W, _hidden(W, x), "inst h f, batch inst h -> batch inst f"))


def toy_forward__W_not_transposed(W, b, x):
    """the hidden vector is multiplied by W again instead of by Wᵀ (W W x), which only has the right shape when W is square."""
    return torch.relu(einops.einsum(W, _hidden(W, x), "inst f h, batch inst h -> batch inst f") + b)


def generate_batch__probability_inverted(n_batch, feature_probability, generator=None):
    """features are present with probability 1 − p instead of p."""
    shape = (n_batch, *feature_probability.shape)
    values = torch.rand(shape, generator=generator)
    return torch.where(torch.rand(shape, generator=generator) < 1 - feature_probability, values, 0.0)


def generate_batch__never_zeroed(n_batch, feature_probability, generator=None):
    """no feature is ever set to 0: every entry is a uniform draw."""
    return torch.rand((n_batch, *feature_probability.shape), generator=generator)


def generate_batch__presence_mask_only(n_batch, feature_probability, generator=None):
    """present features are 1 instead of a uniform value: the batch is only the presence mask."""
    shape = (n_batch, *feature_probability.shape)
    return (torch.rand(shape, generator=generator) < feature_probability).float()


def generate_batch__gaussian_values(n_batch, feature_probability, generator=None):
    """present values are |N(0, 1)| draws (`torch.randn`) instead of uniform on [0, 1)."""
    shape = (n_batch, *feature_probability.shape)
    values = torch.randn(shape, generator=generator).abs()
    return torch.where(torch.rand(shape, generator=generator) < feature_probability, values, 0.0)


def generate_batch__same_uniform_for_value_and_mask(n_batch, feature_probability, generator=None):
    """one uniform draw decides both presence and value, so present values are uniform on [0, p) instead of [0, 1)."""
    values = torch.rand((n_batch, *feature_probability.shape), generator=generator)
    return torch.where(values < feature_probability, values, 0.0)


def importance_weighted_loss__unweighted(x, x_hat, importance):
    """the importances are left out: every feature's squared error counts the same."""
    return ((x - x_hat) ** 2).mean(0).sum(-1)


def importance_weighted_loss__mean_over_features(x, x_hat, importance):
    """the weighted squared errors are averaged over the features instead of summed."""
    return (importance * (x - x_hat) ** 2).mean(0).mean(-1)


def importance_weighted_loss__absolute_error(x, x_hat, importance):
    """the errors are absolute, not squared."""
    return (importance * (x - x_hat).abs()).mean(0).sum(-1)


def importance_weighted_loss__sum_over_batch(x, x_hat, importance):
    """the loss is summed over the batch instead of averaged."""
    return (importance * (x - x_hat) ** 2).sum(0).sum(-1)


def _overlaps(W, normalise=True):
    W_hat = W / W.norm(dim=1, keepdim=True) if normalise else W
    return einops.einsum(W_hat, W, "inst h i, inst h j -> inst i j")


def feature_interference__includes_self(W):
    """the sum includes j = i, so each feature's own ‖W_i‖² counts as interference."""
    return (_overlaps(W) ** 2).sum(-1)


def feature_interference__unnormalised(W):
    """W_i is not normalised: the sum is over (W_i · W_j)² instead of (Ŵ_i · W_j)²."""
    overlaps = _overlaps(W, normalise=False) ** 2
    return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)


def feature_interference__no_square(W):
    """the dot products are not squared (their absolute values are summed)."""
    overlaps = _overlaps(W).abs()
    return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)


def feature_interference__normalises_the_wrong_side(W):
    """W_j is normalised instead of W_i (Ŵ_j · W_i instead of Ŵ_i · W_j)."""
    overlaps = _overlaps(W).transpose(-1, -2) ** 2
    return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)


def feature_dimensionality__no_square(W):
    """the overlaps in the denominator are not squared (their absolute values are summed)."""
    return W.norm(dim=1) ** 2 / _overlaps(W).abs().sum(-1)


def feature_dimensionality__unnormalised(W):
    """W_i is not normalised in the denominator: it sums (W_i · W_j)² instead of (Ŵ_i · W_j)²."""
    return W.norm(dim=1) ** 2 / (_overlaps(W, normalise=False) ** 2).sum(-1)


def feature_dimensionality__excludes_self(W):
    """the denominator leaves out j = i, so the feature's own ‖W_i‖² is missing from it."""
    overlaps = _overlaps(W) ** 2
    return W.norm(dim=1) ** 2 / (overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1))


def feature_dimensionality__norm_not_squared(W):
    """the numerator is ‖W_i‖ instead of ‖W_i‖²."""
    return W.norm(dim=1) / (_overlaps(W) ** 2).sum(-1)


def _pairs(x):
    return einops.rearrange(x, "batch inst pairs two -> batch inst (pairs two)")


def generate_correlated_batch__pairs_independent(n_batch, feature_probability, generator=None):
    """each feature of a pair gets its own presence draw, so the two are present independently instead of together."""
    shape = (n_batch, *feature_probability.shape, 2)
    present = torch.rand(shape, generator=generator) < feature_probability[..., None]
    return _pairs(torch.where(present, torch.rand(shape, generator=generator), 0.0))


def generate_correlated_batch__same_value_for_pair(n_batch, feature_probability, generator=None):
    """both features of a present pair get the same value instead of two independent draws."""
    shape = (n_batch, *feature_probability.shape)
    values = torch.rand(shape, generator=generator)
    x = torch.where(torch.rand(shape, generator=generator) < feature_probability, values, 0.0)
    return _pairs(torch.stack([x, x], dim=-1))


def generate_correlated_batch__pairs_as_halves(n_batch, feature_probability, generator=None):
    """pair k is laid out as features k and k + pairs instead of 2k and 2k + 1."""
    shape = (n_batch, *feature_probability.shape)
    present = torch.rand(shape, generator=generator) < feature_probability
    x = torch.where(present[..., None], torch.rand((*shape, 2), generator=generator), 0.0)
    return einops.rearrange(x, "batch inst pairs two -> batch inst (two pairs)")


def generate_anticorrelated_batch__both_allowed(n_batch, feature_probability, generator=None):
    """each feature of a pair is drawn independently with probability p, so both can be present at once."""
    shape = (n_batch, *feature_probability.shape, 2)
    present = torch.rand(shape, generator=generator) < feature_probability[..., None]
    return _pairs(torch.where(present, torch.rand(shape, generator=generator), 0.0))


def generate_anticorrelated_batch__pair_probability_not_doubled(n_batch, feature_probability, generator=None):
    """the pair is active with probability p instead of 2p, so each feature is present only with probability p / 2."""
    shape = (n_batch, *feature_probability.shape)
    active = torch.rand(shape, generator=generator) < feature_probability
    first = torch.rand(shape, generator=generator) < 0.5
    present = torch.stack([active & first, active & ~first], dim=-1)
    return _pairs(torch.where(present, torch.rand((*shape, 2), generator=generator), 0.0))


def generate_anticorrelated_batch__second_only_if_first_absent(n_batch, feature_probability, generator=None):
    """the second feature is drawn only when the first is absent, so it is present with probability p (1 − p) instead of p."""
    shape = (n_batch, *feature_probability.shape)
    first = torch.rand(shape, generator=generator) < feature_probability
    second = ~first & (torch.rand(shape, generator=generator) < feature_probability)
    present = torch.stack([first, second], dim=-1)
    return _pairs(torch.where(present, torch.rand((*shape, 2), generator=generator), 0.0))


def neuron_forward__no_hidden_relu(W, b, x):
    """the hidden layer has no ReLU: this is the model without neurons, ReLU(Wᵀ W x + b)."""
    return torch.relu(einops.einsum(W, _hidden(W, x), "inst h f, batch inst h -> batch inst f") + b)


def neuron_forward__no_output_relu(W, b, x):
    """the output ReLU is left out."""
    return einops.einsum(W, torch.relu(_hidden(W, x)), "inst h f, batch inst h -> batch inst f") + b


def neuron_forward__bias_after_relu(W, b, x):
    """the bias is added after the output ReLU instead of inside it."""
    return torch.relu(einops.einsum(W, torch.relu(_hidden(W, x)), "inst h f, batch inst h -> batch inst f")) + b
