"""Plausible wrong implementations of section 04c's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``; each docstring completes "This is what you get when …",
which a learner whose output matches the mistake reads in the check's message.
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
    """the mean is not subtracted first, so A whitens the second moment E[γγᵀ] instead of the covariance."""
    cov, mean = _cov(W_U, centre=False)
    return _power(cov, -0.5), mean


def causal_transform__inverse_not_inverse_sqrt(W_U):
    """A is Cov(γ)⁻¹, the matrix of the inner product itself, instead of its inverse square root Cov(γ)^(-1/2)."""
    cov, mean = _cov(W_U)
    return _power(cov, -1.0), mean


def causal_transform__cholesky_whitening(W_U):
    """A is the inverse of a Cholesky factor: it whitens too (AᵀA = Cov⁻¹), but it is not the symmetric inverse square root."""
    cov, mean = _cov(W_U)
    return torch.linalg.inv(torch.linalg.cholesky(cov)), mean


def causal_transform__covariance_over_dimensions(W_U):
    """each token's vector is centred on the mean of its own coordinates instead of on the mean token (the wrong axis)."""
    gamma = W_U.double()  # [d_model, d_vocab] treated as rows = dims
    mean = gamma.mean(0)
    x = gamma - mean
    cov = x @ x.T / gamma.shape[1]
    return _power(cov, -0.5), W_U.T.double().mean(0)


def causal_transform__float32(W_U):
    """the covariance and its eigendecomposition are computed in float32 (A and the mean come back as float32, less precise)."""
    gamma = W_U.T.float()
    mean = gamma.mean(0)
    cov = (gamma - mean).T @ (gamma - mean) / gamma.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    return eigenvectors @ torch.diag(eigenvalues.rsqrt()) @ eigenvectors.T, mean


def concept_direction__not_normalised(g, pairs):
    """the mean difference is returned without dividing it by its norm."""
    return (g[pairs[:, 1]] - g[pairs[:, 0]]).mean(0)


def concept_direction__reversed(g, pairs):
    """the differences are base minus target (y0 − y1), so the direction points the wrong way."""
    d = (g[pairs[:, 0]] - g[pairs[:, 1]]).mean(0)
    return d / d.norm()


def concept_direction__normalises_each_difference(g, pairs):
    """each pair's difference is scaled to unit length before the average, instead of only the mean."""
    differences = g[pairs[:, 1]] - g[pairs[:, 0]]
    d = (differences / differences.norm(dim=-1, keepdim=True)).mean(0)
    return d / d.norm()


def concept_direction__mean_of_targets(g, pairs):
    """the base words are never subtracted: the direction is the normalised mean of the target words alone."""
    d = g[pairs[:, 1]].mean(0)
    return d / d.norm()


def inner_products__ignores_A(directions, A=None):
    """A is ignored: every cosine is the Euclidean one."""
    unit = directions / directions.norm(dim=-1, keepdim=True)
    return unit @ unit.T


def inner_products__not_renormalised(directions, A=None):
    """the directions are normalised before A is applied, not after, so the entries are not cosines (the diagonal is not 1)."""
    unit = directions / directions.norm(dim=-1, keepdim=True)
    if A is not None:
        unit = unit @ A.T
    return unit @ unit.T


def inner_products__A_on_one_side(directions, A=None):
    """A is applied to only one of the two vectors, (Ax)ᵀy instead of (Ax)ᵀ(Ay)."""
    unit = directions / directions.norm(dim=-1, keepdim=True)
    if A is None:
        return unit @ unit.T
    left = unit @ A
    return (left / left.norm(dim=-1, keepdim=True)) @ unit.T


def inner_products__A_squared(directions, A=None):
    """xᵀA²y is computed for vectors of Euclidean length 1: it is divided by the Euclidean norms, not by the norms under A."""
    unit = directions / directions.norm(dim=-1, keepdim=True)
    return unit @ (A @ A if A is not None else torch.eye(unit.shape[-1], dtype=unit.dtype)) @ unit.T


def _loo(differences):
    n = len(differences)
    loo = (differences.sum(0) - differences) / (n - 1)
    return loo / loo.norm(dim=-1, keepdim=True)


def probe_scores__no_leave_one_out(g, pairs):
    """one direction and one threshold are estimated from all the pairs, the held-out pair included."""
    words = g[pairs]
    d = (words[:, 1] - words[:, 0]).mean(0)
    d = d / d.norm()
    projections = words @ d
    return projections - projections.mean()


def probe_scores__no_threshold(g, pairs):
    """the threshold is never subtracted: the scores are the raw projections on the leave-one-out direction."""
    words = g[pairs]
    loo = _loo(words[:, 1] - words[:, 0])
    return torch.einsum("ikd,id->ik", words, loo)


def probe_scores__threshold_includes_held_out(g, pairs):
    """the threshold averages the projections of every pair's words, the held-out pair's two words included."""
    words = g[pairs]
    loo = _loo(words[:, 1] - words[:, 0])
    projections = torch.einsum("ikd,jd->jik", words, loo)
    held_out = torch.einsum("ikd,id->ik", words, loo)
    return held_out - projections.mean(dim=(1, 2))[:, None]


def probe_scores__direction_not_normalised(g, pairs):
    """the leave-one-out mean difference is not scaled to unit length, so the scores are multiplied by its norm."""
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
    """the vector is added before the final norm (the last block's hook_resid_post), which divides it by the stream's RMS."""
    name = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    return _last_logits(model, tokens, name, lambda x: x + alpha * direction)


def steer__direction_normalised(model, tokens, direction, alpha):
    """the direction is scaled to unit length first: alpha times a unit vector is added, not alpha times the direction."""
    return _last_logits(model, tokens, STEER_HOOK, lambda x: x + alpha * direction / direction.norm())


def steer__hook_result_discarded(model, tokens, direction, alpha):
    """the hook edits a copy and returns nothing, so the model runs unsteered."""
    def hook(x, hook):
        x = x.clone()
        x[:, -1] += alpha * direction
        # forgets to return the edited copy: the model keeps the original

    return model.run_with_hooks(tokens, fwd_hooks=[(STEER_HOOK, hook)])[:, -1]


def steer__all_positions_returned(model, tokens, direction, alpha):
    """alpha · direction is added at every position and the logits of every position are returned, not just the last."""
    return model.run_with_hooks(tokens, fwd_hooks=[(STEER_HOOK, lambda x, hook: x + alpha * direction)])
