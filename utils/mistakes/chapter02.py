"""Plausible wrong implementations of chapter 02's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``; each docstring completes "This is what you get when …",
which a learner whose output matches the mistake reads in the check's message.
"""

import dataclasses
import math
from unittest import mock

import torch
import torch.nn.functional as F

import utils.references.chapter02 as references
from utils.references.chapter02 import (
    constrain_decoder,
    resample_dead_latents,
    sae_forward,
    train_sae,
)


def sae_forward__no_pre_encoder_bias(x, W_enc, b_enc, W_dec, b_dec):
    """the decoder bias is not subtracted from x before encoding."""
    acts = torch.relu(x @ W_enc + b_enc)
    return acts, acts @ W_dec + b_dec


def sae_forward__no_relu(x, W_enc, b_enc, W_dec, b_dec):
    """the ReLU is left out, so latents can be negative."""
    acts = (x - b_dec) @ W_enc + b_enc
    return acts, acts @ W_dec + b_dec


def sae_forward__decoder_bias_not_added_back(x, W_enc, b_enc, W_dec, b_dec):
    """b_dec is not added back to the reconstruction."""
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    return acts, acts @ W_dec


def sae_forward__decoder_normalised_on_the_fly(x, W_enc, b_enc, W_dec, b_dec):
    """the decoder rows are normalised inside the forward pass instead of using W_dec as given."""
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    return acts, acts @ F.normalize(W_dec, dim=-1) + b_dec


def sae_loss__l1_not_weighted_by_decoder_norm(x, acts, x_hat, W_dec, l1_coeff):
    """the sparsity term sums the latents without weighting each by its decoder row's norm."""
    mse = (x - x_hat).pow(2).sum(-1).mean()
    sparsity = acts.sum(-1).mean()
    return {"loss": mse + l1_coeff * sparsity, "mse": mse, "sparsity": sparsity}


def sae_loss__mse_averaged_over_dimensions(x, acts, x_hat, W_dec, l1_coeff):
    """the squared error is averaged over the d_in dimensions instead of summed."""
    mse = (x - x_hat).pow(2).mean()
    sparsity = (acts * W_dec.norm(dim=-1)).sum(-1).mean()
    return {"loss": mse + l1_coeff * sparsity, "mse": mse, "sparsity": sparsity}


def sae_loss__squared_decoder_norm(x, acts, x_hat, W_dec, l1_coeff):
    """each latent is weighted by its squared decoder norm ‖W_dec[i]‖² instead of the norm."""
    mse = (x - x_hat).pow(2).sum(-1).mean()
    sparsity = (acts * W_dec.pow(2).sum(-1)).sum(-1).mean()
    return {"loss": mse + l1_coeff * sparsity, "mse": mse, "sparsity": sparsity}


def constrain_decoder__decoder_not_normalised(W_dec, grad):
    """W_dec is returned as it came in, its rows not scaled to norm 1."""
    unit = F.normalize(W_dec, dim=-1)
    return W_dec, grad - (grad * unit).sum(-1, keepdim=True) * unit


def constrain_decoder__normalises_columns(W_dec, grad):
    """the columns of W_dec are normalised (dim=0) instead of its rows."""
    unit = F.normalize(W_dec, dim=0)
    return unit, grad - (grad * unit).sum(-1, keepdim=True) * unit


def constrain_decoder__gradient_untouched(W_dec, grad):
    """the gradient is returned unchanged: its component along each row is not removed."""
    return F.normalize(W_dec, dim=-1), grad


def constrain_decoder__projects_with_unnormalised_rows(W_dec, grad):
    """the gradient is projected on the raw rows of W_dec instead of the unit rows, so the wrong amount is removed."""
    return F.normalize(W_dec, dim=-1), grad - (grad * W_dec).sum(-1, keepdim=True) * W_dec


def feature_recovery__dot_product_not_cosine(true_features, W_dec):
    """dot products are used instead of cosine similarities: the vectors are not normalised."""
    return (true_features @ W_dec.T).max(-1).values


def feature_recovery__absolute_cosine(true_features, W_dec):
    """the absolute cosine is taken, so an anti-aligned row (cosine −1) counts as a match."""
    return (F.normalize(true_features, dim=-1) @ F.normalize(W_dec, dim=-1).T).abs().max(-1).values


def feature_recovery__max_over_the_wrong_axis(true_features, W_dec):
    """the max is taken over the true features for each decoder row, not over the decoder rows for each true feature."""
    cos = F.normalize(true_features, dim=-1) @ F.normalize(W_dec, dim=-1).T
    return cos.max(0).values[: len(true_features)]


def variance_explained__no_mean_subtraction(x, x_hat):
    """the denominator is Σx² instead of Σ(x − mean)²: the batch mean is not subtracted."""
    return (1 - (x - x_hat).pow(2).sum() / x.pow(2).sum()).item()


def variance_explained__mean_of_per_dimension_ratios(x, x_hat):
    """one ratio is computed per dimension and the ratios are averaged, instead of one ratio of the two total sums."""
    return (1 - (x - x_hat).pow(2).sum(0) / (x - x.mean(0)).pow(2).sum(0)).mean().item()


def variance_explained__ratio_not_one_minus(x, x_hat):
    """the unexplained fraction (the ratio itself) is returned instead of one minus it."""
    return ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


def firing_stats__l0_sums_activations(acts, dense_frequency=0.1):
    """L0 adds up the activation values instead of counting the latents that fire."""
    frequency = (acts != 0).float().mean(0)
    return {
        "l0": acts.sum(-1).mean().item(),
        "frequency": frequency,
        "dead_fraction": (frequency == 0).float().mean().item(),
        "dense_fraction": (frequency > dense_frequency).float().mean().item(),
    }


def firing_stats__counts_instead_of_frequency(acts, dense_frequency=0.1):
    """frequency is the number of tokens each latent fires on, not the fraction of tokens."""
    count = (acts != 0).float().sum(0)
    return {
        "l0": (acts != 0).float().sum(-1).mean().item(),
        "frequency": count,
        "dead_fraction": (count == 0).float().mean().item(),
        "dense_fraction": (count > dense_frequency).float().mean().item(),
    }


def firing_stats__dead_as_a_count(acts, dense_frequency=0.1):
    """dead_fraction is the number of dead latents, not their fraction of all latents."""
    frequency = (acts != 0).float().mean(0)
    return {
        "l0": (acts != 0).float().sum(-1).mean().item(),
        "frequency": frequency,
        "dead_fraction": float((frequency == 0).sum().item()),
        "dense_fraction": (frequency > dense_frequency).float().mean().item(),
    }


def resample_dead_latents__leaves_dead_latents_dead(x, W_enc, b_enc, W_dec, b_dec, dead, seed=0):
    """the dead latents' encoder bias is not reset to 0, so their very negative bias keeps them silent."""
    out = resample_dead_latents(x, W_enc, b_enc, W_dec, b_dec, dead, seed)
    out["b_enc"] = b_enc.clone()  # forgot to reset the very negative encoder bias
    return out


def resample_dead_latents__uniform_sampling(x, W_enc, b_enc, W_dec, b_dec, dead, seed=0):
    """inputs are drawn uniformly, not with probability ∝ loss², so most picks are inputs the SAE already reconstructs well."""
    _, x_hat = sae_forward(x, W_enc, b_enc, W_dec, b_dec)
    chosen = torch.randint(len(x), (int(dead.sum()),), generator=torch.Generator().manual_seed(seed))
    direction = F.normalize(x[chosen] - x_hat[chosen], dim=-1)
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    W_dec[dead] = direction
    W_enc[:, dead] = direction.T * 0.2 * W_enc[:, ~dead].norm(dim=0).mean()
    b_enc[dead] = 0.0
    return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}


def resample_dead_latents__input_not_residual(x, W_enc, b_enc, W_dec, b_dec, dead, seed=0):
    """the new decoder row is the direction of the input x instead of its residual x − x̂."""
    _, x_hat = sae_forward(x, W_enc, b_enc, W_dec, b_dec)
    loss = (x - x_hat).pow(2).sum(-1)
    chosen = torch.multinomial(loss**2, int(dead.sum()), replacement=True, generator=torch.Generator().manual_seed(seed))
    direction = F.normalize(x[chosen], dim=-1)
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    W_dec[dead] = direction
    W_enc[:, dead] = direction.T * 0.2 * W_enc[:, ~dead].norm(dim=0).mean()
    b_enc[dead] = 0.0
    return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}


def resample_dead_latents__resamples_every_latent(x, W_enc, b_enc, W_dec, b_dec, dead, seed=0):
    """every latent is resampled, the alive ones too."""
    return resample_dead_latents(x, W_enc, b_enc, W_dec, b_dec, torch.ones_like(dead), seed)


def _step(params, optimizer, x, loss_fn, zero_grad="before", project=True, renormalise="after"):
    """The reference's step with one of its parts moved or left out (zero_grad: "before"/"between"/None;
    renormalise: "after"/"before"/None)."""
    if zero_grad == "before":
        optimizer.zero_grad()
    loss, acts, x_hat = loss_fn(params, x)
    loss.backward()
    if zero_grad == "between":
        optimizer.zero_grad()
    with torch.no_grad():
        if project and params["W_dec"].grad is not None:
            _, params["W_dec"].grad = constrain_decoder(params["W_dec"], params["W_dec"].grad)
        if renormalise == "before":
            params["W_dec"].div_(params["W_dec"].norm(dim=-1, keepdim=True))
        optimizer.step()
        if renormalise == "after":
            params["W_dec"].div_(params["W_dec"].norm(dim=-1, keepdim=True))
    return loss.detach(), acts.detach(), x_hat.detach()


def sae_training_step__no_zero_grad(params, optimizer, x, loss_fn):
    """the old gradients are never cleared (no `optimizer.zero_grad()`), so every step adds this batch's gradient to all
    earlier ones."""
    return _step(params, optimizer, x, loss_fn, zero_grad=None)


def sae_training_step__decoder_not_renormalised(params, optimizer, x, loss_fn):
    """the decoder rows are not rescaled to unit norm after the optimizer's step."""
    return _step(params, optimizer, x, loss_fn, renormalise=None)


def sae_training_step__gradient_not_projected(params, optimizer, x, loss_fn):
    """W_dec's gradient keeps its component along the rows (no `constrain_decoder` before the step): Adam then turns
    the rows, not just stretches them."""
    return _step(params, optimizer, x, loss_fn, project=False)


def sae_training_step__renormalised_before_the_step(params, optimizer, x, loss_fn):
    """the rows are rescaled before the optimizer's step instead of after it, so the step leaves them off unit norm."""
    return _step(params, optimizer, x, loss_fn, renormalise="before")


def sae_training_step__zero_grad_after_backward(params, optimizer, x, loss_fn):
    """`optimizer.zero_grad()` comes between `loss.backward()` and `optimizer.step()`: the step finds no gradient and
    nothing is learned."""
    return _step(params, optimizer, x, loss_fn, zero_grad="between")


def _resample_into(params, optimizer, x, dead, seed, moments=("exp_avg", "exp_avg_sq"), only_dead=True):
    with torch.no_grad():
        new = resample_dead_latents(x, params["W_enc"], params["b_enc"], params["W_dec"], params["b_dec"], dead, seed)
        for name in ["W_enc", "b_enc", "W_dec"]:
            params[name].copy_(new[name])
            state = optimizer.state.get(params[name], {})
            for moment in moments:
                if not only_dead:
                    state[moment].zero_()
                elif name == "W_enc":
                    state[moment][:, dead] = 0.0
                else:
                    state[moment][dead] = 0.0


def resample_in_training__adam_not_reset(params, optimizer, x, dead, seed):
    """the latents are resampled but Adam's running moments are left as they were, so its stale momentum drags the new latents."""
    _resample_into(params, optimizer, x, dead, seed, moments=())


def resample_in_training__rebinds_params(params, optimizer, x, dead, seed):
    """the new tensors are put into the dict (`params[name] = ...`) instead of copied into its tensors: the optimizer
    keeps training the old ones."""
    new = resample_dead_latents(x, params["W_enc"], params["b_enc"], params["W_dec"], params["b_dec"], dead, seed)
    for name in ["W_enc", "b_enc", "W_dec"]:
        state = optimizer.state.get(params[name], {})
        for moment in ("exp_avg", "exp_avg_sq"):
            if name == "W_enc":
                state[moment][:, dead] = 0.0
            else:
                state[moment][dead] = 0.0
        params[name] = new[name].requires_grad_(True)


def resample_in_training__resets_every_latent(params, optimizer, x, dead, seed):
    """Adam's moments are zeroed for every latent, the alive ones too, instead of only for the resampled ones."""
    _resample_into(params, optimizer, x, dead, seed, only_dead=False)


def resample_in_training__second_moment_kept(params, optimizer, x, dead, seed):
    """only Adam's first moment ("exp_avg") is reset; the second ("exp_avg_sq") keeps the dead latents' old scale."""
    _resample_into(params, optimizer, x, dead, seed, moments=("exp_avg",))


def train_sae__never_resamples(activations, cfg, objective=None, held_out=None, desc="training SAE"):
    """dead latents are never resampled: `resample_in_training` is never called, whatever cfg.resample says."""
    return train_sae(activations, dataclasses.replace(cfg, resample=None), objective, held_out, desc)


def train_sae__trains_on_held_out(activations, cfg, objective=None, held_out=None, desc="training SAE"):
    """the batches are drawn from held_out instead of the training activations."""
    return train_sae(held_out, cfg, objective, held_out, desc)


def train_sae__no_sparsity_penalty(activations, cfg, objective=None, held_out=None, desc="training SAE"):
    """the loss is the reconstruction error alone: the L1 term (λ·Σ f_i‖W_dec,i‖) is left out."""
    return train_sae(activations, dataclasses.replace(cfg, l1_coeff=0.0), objective, held_out, desc)


def train_sae__decoder_never_renormalised(activations, cfg, objective=None, held_out=None, desc="training SAE"):
    """the loop's steps never rescale the decoder rows to unit norm (the L1 term then shrinks by growing them)."""
    with mock.patch.object(references, "sae_training_step", sae_training_step__decoder_not_renormalised):
        return train_sae(activations, cfg, objective, held_out, desc)


def topk_activation__keeps_k_minus_1(pre_acts, k):
    """only k − 1 latents are kept per row instead of k."""
    values, indices = pre_acts.topk(k - 1, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))


def topk_activation__no_relu(pre_acts, k):
    """the ReLU is left out, so a negative value among the top k stays negative."""
    values, indices = pre_acts.topk(k, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, indices, values)


def topk_activation__largest_magnitude(pre_acts, k):
    """the k pre-activations largest in absolute value are kept instead of the k largest."""
    _, indices = pre_acts.abs().topk(k, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(pre_acts.gather(-1, indices)))


def auxk_loss__uses_alive_latents_too(residual, pre_acts, W_dec, dead, k_aux):
    """the top k_aux are chosen among all latents, alive ones included, instead of only the dead ones."""
    values, indices = pre_acts.topk(k_aux, dim=-1)
    aux = torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))
    return (residual - aux @ W_dec).pow(2).sum(-1).mean()


def auxk_loss__mean_over_dimensions(residual, pre_acts, W_dec, dead, k_aux):
    """the squared error is averaged over the d_in dimensions instead of summed."""
    masked = pre_acts.masked_fill(~dead, -math.inf)
    values, indices = masked.topk(min(k_aux, int(dead.sum())), dim=-1)
    aux = torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))
    return (residual - aux @ W_dec).pow(2).mean()


def auxk_loss__all_dead_latents(residual, pre_acts, W_dec, dead, k_aux):
    """every dead latent with a positive pre-activation is used, not only the top k_aux."""
    aux = torch.relu(pre_acts) * dead
    return (residual - aux @ W_dec).pow(2).sum(-1).mean()


def jumprelu_backward__no_gradient_to_threshold(x, threshold, bandwidth, grad_output):
    """the threshold gets zero gradient, as plain autograd would give it."""
    return (x > threshold) * grad_output, torch.zeros_like(threshold)


def jumprelu_backward__step_gradient_without_theta(x, threshold, bandwidth, grad_output):
    """the threshold's gradient is the step function's pseudo-derivative −(1/ε)·K, without JumpReLU's factor θ."""
    rectangle = ((x - threshold) / bandwidth).abs() < 0.5
    return (x > threshold) * grad_output, (-(1 / bandwidth) * rectangle * grad_output).sum(0)


def jumprelu_backward__kernel_too_wide(x, threshold, bandwidth, grad_output):
    """the window is |x − θ| < ε instead of ε/2: the rectangle is twice as wide."""
    rectangle = ((x - threshold) / bandwidth).abs() < 1
    return (x > threshold) * grad_output, (-(threshold / bandwidth) * rectangle * grad_output).sum(0)


def jumprelu_backward__relu_gradient_for_x(x, threshold, bandwidth, grad_output):
    """x's gradient is the ReLU's (1 where x > 0) instead of 1 where x > θ."""
    rectangle = ((x - threshold) / bandwidth).abs() < 0.5
    return (x > 0) * grad_output, (-(threshold / bandwidth) * rectangle * grad_output).sum(0)


def gated_forward__no_exp_on_r_mag(x, W_enc, b_gate, r_mag, b_mag, W_dec, b_dec):
    """the magnitude path scales W_enc by r_mag itself instead of exp(r_mag)."""
    centred = x - b_dec
    acts = ((centred @ W_enc + b_gate) > 0) * torch.relu(centred @ (W_enc * r_mag) + b_mag)
    return acts, acts @ W_dec + b_dec


def gated_forward__relu_gate(x, W_enc, b_gate, r_mag, b_mag, W_dec, b_dec):
    """the gate is ReLU(π_gate) instead of the step H(π_gate), so the gate's size multiplies the magnitude."""
    centred = x - b_dec
    acts = torch.relu(centred @ W_enc + b_gate) * torch.relu(centred @ (W_enc * r_mag.exp()) + b_mag)
    return acts, acts @ W_dec + b_dec


def gated_forward__gate_bias_for_magnitude(x, W_enc, b_gate, r_mag, b_mag, W_dec, b_dec):
    """the magnitude path uses the gate's bias b_gate instead of its own b_mag."""
    centred = x - b_dec
    acts = ((centred @ W_enc + b_gate) > 0) * torch.relu(centred @ (W_enc * r_mag.exp()) + b_gate)
    return acts, acts @ W_dec + b_dec


def ce_loss_with_sae__splices_the_bos_too(model, tokens, hook_name, W_enc, b_enc, W_dec, b_dec):
    """the reconstruction also replaces position 0, the BOS, which the SAE never saw."""
    def hook(resid, hook):
        return sae_forward(resid, W_enc, b_enc, W_dec, b_dec)[1]

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, hook)]).item()


def ce_loss_with_sae__hook_returns_nothing(model, tokens, hook_name, W_enc, b_enc, W_dec, b_dec):
    """the hook computes the reconstruction but returns nothing, so the model keeps its own activation (the clean loss)."""
    def hook(resid, hook):
        sae_forward(resid[:, 1:], W_enc, b_enc, W_dec, b_dec)  # computed, never returned: the clean loss

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, hook)]).item()


def ce_loss_with_sae__decoder_bias_forgotten(model, tokens, hook_name, W_enc, b_enc, W_dec, b_dec):
    """b_dec is not added back to the reconstruction."""
    def hook(resid, hook):
        acts = torch.relu((resid[:, 1:] - b_dec) @ W_enc + b_enc)
        return torch.cat([resid[:, :1], acts @ W_dec], dim=1)

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, hook)]).item()


def feature_logit_effects__bottom_by_magnitude(direction, W_U, k):
    """the bottom tokens are those with the smallest absolute effect instead of the most negative."""
    effects = direction @ W_U
    return {"top": effects.topk(k).indices, "bottom": effects.abs().topk(k, largest=False).indices}


def feature_logit_effects__cosine_not_dot_product(direction, W_U, k):
    """the columns of W_U are normalised, giving cosines instead of the logit effects."""
    effects = direction @ F.normalize(W_U, dim=0)
    return {"top": effects.topk(k).indices, "bottom": (-effects).topk(k).indices}


def feature_logit_effects__unsorted(direction, W_U, k):
    """the top tokens are not sorted largest first (here they come in order of token id)."""
    effects = direction @ W_U
    return {"top": effects.topk(k, sorted=False).indices.sort().values, "bottom": (-effects).topk(k).indices}


def steer_with_latent__only_last_position(model, tokens, hook_name, W_dec, latent, alpha):
    """the direction is added at the last position only, so no earlier position the last one attends to is steered."""
    def steer(resid, hook):
        resid = resid.clone()
        resid[:, -1] += alpha * W_dec[latent]
        return resid

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, steer)])[:, -1].log_softmax(-1)


def steer_with_latent__hook_returns_nothing(model, tokens, hook_name, W_dec, latent, alpha):
    """the hook computes the steered activation but returns nothing, so the model runs clean."""
    def steer(resid, hook):
        resid + alpha * W_dec[latent]  # noqa: B018  (computed, never returned)

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, steer)])[:, -1].log_softmax(-1)


def steer_with_latent__alpha_ignored(model, tokens, hook_name, W_dec, latent, alpha):
    """the unit decoder row is added without its scale α."""
    def steer(resid, hook):
        return resid + W_dec[latent]

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, steer)])[:, -1].log_softmax(-1)


def steer_with_latent__returns_logits(model, tokens, hook_name, W_dec, latent, alpha):
    """the steered logits are returned instead of their log_softmax."""
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, lambda resid, hook: resid + alpha * W_dec[latent])])[:, -1]
