"""Plausible wrong implementations of section 04c's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``.
"""

import torch

from utils.paths import STEER_HOOK


def _cov(W_U, centre=True, unbiased=False):
    gamma = W_U.T.double()
    mean = gamma.mean(0)
    x = gamma - mean if centre else gamma
    return x.T @ x / (gamma.shape[0] - (1 if unbiased else 0)), mean


def _power(cov, p):
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    return eigenvectors @ torch.diag(eigenvalues**p) @ eigenvectors.T


def causal_transform__not_centred(W_U):
    cov, mean = _cov(W_U, centre=False)  # the second moment, not the covariance
    return _power(cov, -0.5), mean


def causal_transform__inverse_not_inverse_sqrt(W_U):
    cov, mean = _cov(W_U)
    return _power(cov, -1.0), mean


def causal_transform__cholesky_whitening(W_U):
    # whitens too (Aᵀ A = Cov⁻¹), but it is not the symmetric square root the paper uses
    cov, mean = _cov(W_U)
    return torch.linalg.inv(torch.linalg.cholesky(cov)), mean


def causal_transform__covariance_over_dimensions(W_U):
    # centring and averaging over the wrong axis: the mean of each token's coordinates
    gamma = W_U.double()  # [d_model, d_vocab] treated as rows = dims
    mean = gamma.mean(0)
    x = gamma - mean
    cov = x @ x.T / gamma.shape[1]
    return _power(cov, -0.5), W_U.T.double().mean(0)


def causal_transform__float32(W_U):
    gamma = W_U.T.float()
    mean = gamma.mean(0)
    cov = (gamma - mean).T @ (gamma - mean) / gamma.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    return eigenvectors @ torch.diag(eigenvalues.rsqrt()) @ eigenvectors.T, mean


def concept_direction__not_normalised(g, pairs):
    return (g[pairs[:, 1]] - g[pairs[:, 0]]).mean(0)


def concept_direction__reversed(g, pairs):
    d = (g[pairs[:, 0]] - g[pairs[:, 1]]).mean(0)
    return d / d.norm()


def concept_direction__normalises_each_difference(g, pairs):
    differences = g[pairs[:, 1]] - g[pairs[:, 0]]
    d = (differences / differences.norm(dim=-1, keepdim=True)).mean(0)
    return d / d.norm()


def concept_direction__mean_of_targets(g, pairs):
    d = g[pairs[:, 1]].mean(0)  # forgets to subtract the base words
    return d / d.norm()


def inner_products__ignores_A(directions, A=None):
    unit = directions / directions.norm(dim=-1, keepdim=True)
    return unit @ unit.T


def inner_products__not_renormalised(directions, A=None):
    unit = directions / directions.norm(dim=-1, keepdim=True)
    if A is not None:
        unit = unit @ A.T
    return unit @ unit.T


def inner_products__A_on_one_side(directions, A=None):
    unit = directions / directions.norm(dim=-1, keepdim=True)
    if A is None:
        return unit @ unit.T
    left = unit @ A
    return (left / left.norm(dim=-1, keepdim=True)) @ unit.T


def inner_products__A_squared(directions, A=None):
    # xᵀ A² y is the causal inner product, but the norms must then be √(xᵀ A² x), not the Euclidean ones
    unit = directions / directions.norm(dim=-1, keepdim=True)
    return unit @ (A @ A if A is not None else torch.eye(unit.shape[-1], dtype=unit.dtype)) @ unit.T


def _loo(differences):
    n = len(differences)
    loo = (differences.sum(0) - differences) / (n - 1)
    return loo / loo.norm(dim=-1, keepdim=True)


def probe_scores__no_leave_one_out(g, pairs):
    words = g[pairs]
    d = (words[:, 1] - words[:, 0]).mean(0)
    d = d / d.norm()
    projections = words @ d
    return projections - projections.mean()


def probe_scores__no_threshold(g, pairs):
    words = g[pairs]
    loo = _loo(words[:, 1] - words[:, 0])
    return torch.einsum("ikd,id->ik", words, loo)


def probe_scores__threshold_includes_held_out(g, pairs):
    words = g[pairs]
    loo = _loo(words[:, 1] - words[:, 0])
    projections = torch.einsum("ikd,jd->jik", words, loo)
    held_out = torch.einsum("ikd,id->ik", words, loo)
    return held_out - projections.mean(dim=(1, 2))[:, None]


def probe_scores__direction_not_normalised(g, pairs):
    words = g[pairs]
    differences = words[:, 1] - words[:, 0]
    n = len(pairs)
    loo = (differences.sum(0) - differences) / (n - 1)
    projections = torch.einsum("ikd,jd->jik", words, loo)
    held_out = torch.einsum("ikd,id->ik", words, loo)
    threshold = (projections.sum(dim=(1, 2)) - held_out.sum(-1)) / (2 * (n - 1))
    return held_out - threshold[:, None]


def _last_logits(model, tokens, name, edit):
    def hook(x, hook):
        x[:, -1] = edit(x[:, -1])
        return x

    return model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])[:, -1]


def steer__before_the_final_norm(model, tokens, direction, alpha):
    name = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    return _last_logits(model, tokens, name, lambda x: x + alpha * direction)


def steer__direction_normalised(model, tokens, direction, alpha):
    return _last_logits(model, tokens, STEER_HOOK, lambda x: x + alpha * direction / direction.norm())


def steer__hook_result_discarded(model, tokens, direction, alpha):
    def hook(x, hook):
        x = x.clone()
        x[:, -1] += alpha * direction
        # forgets to return the edited copy: the model keeps the original

    return model.run_with_hooks(tokens, fwd_hooks=[(STEER_HOOK, hook)])[:, -1]


def steer__all_positions_returned(model, tokens, direction, alpha):
    return model.run_with_hooks(tokens, fwd_hooks=[(STEER_HOOK, lambda x, hook: x + alpha * direction)])
