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


def toy_parameters__standard_normal(n_inst, n_features, d_hidden, generator=None):
    """W is drawn with `torch.randn` but not scaled, so its entries have standard deviation 1 instead of
    Xavier's sqrt(2 / (n + m))."""
    W = torch.randn((n_inst, d_hidden, n_features), generator=generator)
    return torch.nn.Parameter(W), torch.nn.Parameter(torch.zeros(n_inst, n_features))


def toy_parameters__bias_shared_by_instances(n_inst, n_features, d_hidden, generator=None):
    """one bias of shape (n_features,) is tied across all the instances instead of one bias per instance."""
    W = torch.randn((n_inst, d_hidden, n_features), generator=generator) * (2 / (n_features + d_hidden)) ** 0.5
    return torch.nn.Parameter(W), torch.nn.Parameter(torch.zeros(n_features))


def toy_parameters__plain_tensors(n_inst, n_features, d_hidden, generator=None):
    """W and b are returned as plain tensors instead of `nn.Parameter`s, so an optimizer given
    `model.parameters()` never sees them."""
    W = torch.randn((n_inst, d_hidden, n_features), generator=generator) * (2 / (n_features + d_hidden)) ** 0.5
    return W, torch.zeros(n_inst, n_features)


def toy_parameters__xavier_on_3d_tensor(n_inst, n_features, d_hidden, generator=None):
    """`nn.init.xavier_normal_` is applied to the whole 3-D tensor, which counts n_inst and n_features into its
    fans: its standard deviation is sqrt(2 / (m n + n_inst n)), not sqrt(2 / (n + m))."""
    W = torch.nn.init.xavier_normal_(torch.empty(n_inst, d_hidden, n_features), generator=generator)
    return torch.nn.Parameter(W), torch.nn.Parameter(torch.zeros(n_inst, n_features))


def toy_parameters__one_draw_for_all_instances(n_inst, n_features, d_hidden, generator=None):
    """one m × n matrix is drawn and repeated for every instance, so all the instances start out identical."""
    W = torch.randn((d_hidden, n_features), generator=generator) * (2 / (n_features + d_hidden)) ** 0.5
    return torch.nn.Parameter(W.repeat(n_inst, 1, 1)), torch.nn.Parameter(torch.zeros(n_inst, n_features))


def _train(model, feature_probability, importance, batch_fn, loss_fn, steps, batch_size=1024, lr=1e-3, seed=0, decay=False,
           desc="training", **mistake):
    """`optimize` with one mistake switched on."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    probability = 1 - feature_probability if mistake.get("sparsity") else feature_probability
    weights = torch.ones_like(importance) if mistake.get("unweighted") else importance
    fixed = batch_fn(batch_size, probability, generator) if mistake.get("one_batch") else None
    recent = []
    for step in range(steps):
        if decay and not mistake.get("no_decay"):
            for group in optimizer.param_groups:
                group["lr"] = lr * (1 - step / steps)
        if mistake.get("generator_each_step"):
            generator = torch.Generator().manual_seed(seed)
        x = fixed if fixed is not None else batch_fn(batch_size, probability, generator)
        loss = loss_fn(x, model(x), weights)
        if not mistake.get("no_zero_grad"):
            optimizer.zero_grad()
        (loss[0] if mistake.get("first_only") else loss.sum()).backward()
        optimizer.step()
        recent.append(loss.detach())
    return torch.stack(recent[-100:]).mean(0)


def optimize__no_zero_grad(*args, **kwargs):
    """`optimizer.zero_grad()` is left out, so each step's gradients add up with all the earlier steps'."""
    return _train(*args, **kwargs, no_zero_grad=True)


def optimize__one_batch_for_all_steps(*args, **kwargs):
    """the batch is drawn once, before the loop, and the same inputs are trained on at every step."""
    return _train(*args, **kwargs, one_batch=True)


def optimize__generator_made_every_step(*args, **kwargs):
    """the generator is made and seeded inside the loop, so every step draws the very same batch."""
    return _train(*args, **kwargs, generator_each_step=True)


def optimize__unweighted_loss(*args, **kwargs):
    """loss_fn is given importances of 1 instead of `importance`, so every feature counts the same."""
    return _train(*args, **kwargs, unweighted=True)


def optimize__sparsity_for_probability(*args, **kwargs):
    """the sparsity S = 1 − p is passed to batch_fn where the feature probability p belongs."""
    return _train(*args, **kwargs, sparsity=True)


def optimize__decay_ignored(*args, **kwargs):
    """decay=True is ignored: the learning rate stays constant instead of falling linearly to 0."""
    return _train(*args, **kwargs, no_decay=True)


def optimize__first_instance_only(*args, **kwargs):
    """only the first instance's loss is backpropagated (`loss[0].backward()`): the others never learn."""
    return _train(*args, **kwargs, first_only=True)


def _reach(W, normalise=True, include_self=False):
    overlaps = _overlaps(W, normalise) ** 2
    return overlaps.sum(-1) - (0 if include_self else overlaps.diagonal(dim1=-2, dim2=-1))


def _phases(represented, shared):
    return torch.where(represented, torch.where(shared, 2, 1), 0)


def feature_phase__reach_includes_self(W, threshold=0.5):
    """the sum over j includes j = i, so a feature's own ‖W_i‖² counts as other features reaching into its direction."""
    return _phases(W.norm(dim=1) > threshold, _reach(W, include_self=True).sqrt() > threshold)


def feature_phase__unnormalised(W, threshold=0.5):
    """W_i is not normalised: the reach sums (W_i · W_j)² instead of (Ŵ_i · W_j)²."""
    return _phases(W.norm(dim=1) > threshold, _reach(W, normalise=False).clamp_min(0).sqrt() > threshold)


def feature_phase__superposition_before_representation(W, threshold=0.5):
    """the superposition test comes first, so a feature too short to be represented is still called 'in
    superposition' when others reach into its direction."""
    shared = _reach(W).clamp_min(0).sqrt() > threshold
    return torch.where(shared, 2, torch.where(W.norm(dim=1) > threshold, 1, 0))


def feature_phase__sum_of_squares_against_threshold(W, threshold=0.5):
    """the sum of squared projections is compared with the threshold itself, instead of its square root (or the
    threshold squared)."""
    return _phases(W.norm(dim=1) > threshold, _reach(W) > threshold)
