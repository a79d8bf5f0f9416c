"""Plausible wrong implementations of chapter 02's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``.
"""

import math

import torch
import torch.nn.functional as F

from utils.references.chapter02 import resample_dead_latents, sae_forward


def sae_forward__no_pre_encoder_bias(x, W_enc, b_enc, W_dec, b_dec):
    acts = torch.relu(x @ W_enc + b_enc)
    return acts, acts @ W_dec + b_dec


def sae_forward__no_relu(x, W_enc, b_enc, W_dec, b_dec):
    acts = (x - b_dec) @ W_enc + b_enc
    return acts, acts @ W_dec + b_dec


def sae_forward__decoder_bias_not_added_back(x, W_enc, b_enc, W_dec, b_dec):
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    return acts, acts @ W_dec


def sae_forward__decoder_normalised_on_the_fly(x, W_enc, b_enc, W_dec, b_dec):
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    return acts, acts @ F.normalize(W_dec, dim=-1) + b_dec


def sae_loss__l1_not_weighted_by_decoder_norm(x, acts, x_hat, W_dec, l1_coeff):
    mse = (x - x_hat).pow(2).sum(-1).mean()
    sparsity = acts.sum(-1).mean()
    return {"loss": mse + l1_coeff * sparsity, "mse": mse, "sparsity": sparsity}


def sae_loss__mse_averaged_over_dimensions(x, acts, x_hat, W_dec, l1_coeff):
    mse = (x - x_hat).pow(2).mean()
    sparsity = (acts * W_dec.norm(dim=-1)).sum(-1).mean()
    return {"loss": mse + l1_coeff * sparsity, "mse": mse, "sparsity": sparsity}


def sae_loss__squared_decoder_norm(x, acts, x_hat, W_dec, l1_coeff):
    mse = (x - x_hat).pow(2).sum(-1).mean()
    sparsity = (acts * W_dec.pow(2).sum(-1)).sum(-1).mean()
    return {"loss": mse + l1_coeff * sparsity, "mse": mse, "sparsity": sparsity}


def constrain_decoder__decoder_not_normalised(W_dec, grad):
    unit = F.normalize(W_dec, dim=-1)
    return W_dec, grad - (grad * unit).sum(-1, keepdim=True) * unit


def constrain_decoder__normalises_columns(W_dec, grad):
    unit = F.normalize(W_dec, dim=0)
    return unit, grad - (grad * unit).sum(-1, keepdim=True) * unit


def constrain_decoder__gradient_untouched(W_dec, grad):
    return F.normalize(W_dec, dim=-1), grad


def constrain_decoder__projects_with_unnormalised_rows(W_dec, grad):
    return F.normalize(W_dec, dim=-1), grad - (grad * W_dec).sum(-1, keepdim=True) * W_dec


def feature_recovery__dot_product_not_cosine(true_features, W_dec):
    return (true_features @ W_dec.T).max(-1).values


def feature_recovery__absolute_cosine(true_features, W_dec):
    return (F.normalize(true_features, dim=-1) @ F.normalize(W_dec, dim=-1).T).abs().max(-1).values


def feature_recovery__max_over_the_wrong_axis(true_features, W_dec):
    cos = F.normalize(true_features, dim=-1) @ F.normalize(W_dec, dim=-1).T
    return cos.max(0).values[: len(true_features)]


def variance_explained__no_mean_subtraction(x, x_hat):
    return (1 - (x - x_hat).pow(2).sum() / x.pow(2).sum()).item()


def variance_explained__mean_of_per_dimension_ratios(x, x_hat):
    return (1 - (x - x_hat).pow(2).sum(0) / (x - x.mean(0)).pow(2).sum(0)).mean().item()


def variance_explained__ratio_not_one_minus(x, x_hat):
    return ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


def firing_stats__l0_sums_activations(acts, dense_frequency=0.1):
    frequency = (acts != 0).float().mean(0)
    return {
        "l0": acts.sum(-1).mean().item(),
        "frequency": frequency,
        "dead_fraction": (frequency == 0).float().mean().item(),
        "dense_fraction": (frequency > dense_frequency).float().mean().item(),
    }


def firing_stats__counts_instead_of_frequency(acts, dense_frequency=0.1):
    count = (acts != 0).float().sum(0)
    return {
        "l0": (acts != 0).float().sum(-1).mean().item(),
        "frequency": count,
        "dead_fraction": (count == 0).float().mean().item(),
        "dense_fraction": (count > dense_frequency).float().mean().item(),
    }


def firing_stats__dead_as_a_count(acts, dense_frequency=0.1):
    frequency = (acts != 0).float().mean(0)
    return {
        "l0": (acts != 0).float().sum(-1).mean().item(),
        "frequency": frequency,
        "dead_fraction": float((frequency == 0).sum().item()),
        "dense_fraction": (frequency > dense_frequency).float().mean().item(),
    }


def resample_dead_latents__leaves_dead_latents_dead(x, W_enc, b_enc, W_dec, b_dec, dead, seed=0):
    out = resample_dead_latents(x, W_enc, b_enc, W_dec, b_dec, dead, seed)
    out["b_enc"] = b_enc.clone()  # forgot to reset the very negative encoder bias
    return out


def resample_dead_latents__uniform_sampling(x, W_enc, b_enc, W_dec, b_dec, dead, seed=0):
    # picks inputs uniformly, not by loss: most picks are well-reconstructed inputs (residual 0)
    _, x_hat = sae_forward(x, W_enc, b_enc, W_dec, b_dec)
    chosen = torch.randint(len(x), (int(dead.sum()),), generator=torch.Generator().manual_seed(seed))
    direction = F.normalize(x[chosen] - x_hat[chosen], dim=-1)
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    W_dec[dead] = direction
    W_enc[:, dead] = direction.T * 0.2 * W_enc[:, ~dead].norm(dim=0).mean()
    b_enc[dead] = 0.0
    return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}


def resample_dead_latents__input_not_residual(x, W_enc, b_enc, W_dec, b_dec, dead, seed=0):
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
    return resample_dead_latents(x, W_enc, b_enc, W_dec, b_dec, torch.ones_like(dead), seed)


def topk_activation__keeps_k_minus_1(pre_acts, k):
    values, indices = pre_acts.topk(k - 1, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))


def topk_activation__no_relu(pre_acts, k):
    values, indices = pre_acts.topk(k, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, indices, values)


def topk_activation__largest_magnitude(pre_acts, k):
    _, indices = pre_acts.abs().topk(k, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(pre_acts.gather(-1, indices)))


def auxk_loss__uses_alive_latents_too(residual, pre_acts, W_dec, dead, k_aux):
    values, indices = pre_acts.topk(k_aux, dim=-1)
    aux = torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))
    return (residual - aux @ W_dec).pow(2).sum(-1).mean()


def auxk_loss__mean_over_dimensions(residual, pre_acts, W_dec, dead, k_aux):
    masked = pre_acts.masked_fill(~dead, -math.inf)
    values, indices = masked.topk(min(k_aux, int(dead.sum())), dim=-1)
    aux = torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))
    return (residual - aux @ W_dec).pow(2).mean()


def auxk_loss__all_dead_latents(residual, pre_acts, W_dec, dead, k_aux):
    aux = torch.relu(pre_acts) * dead
    return (residual - aux @ W_dec).pow(2).sum(-1).mean()


def jumprelu_backward__no_gradient_to_threshold(x, threshold, bandwidth, grad_output):
    return (x > threshold) * grad_output, torch.zeros_like(threshold)


def jumprelu_backward__step_gradient_without_theta(x, threshold, bandwidth, grad_output):
    rectangle = ((x - threshold) / bandwidth).abs() < 0.5
    return (x > threshold) * grad_output, (-(1 / bandwidth) * rectangle * grad_output).sum(0)


def jumprelu_backward__kernel_too_wide(x, threshold, bandwidth, grad_output):
    rectangle = ((x - threshold) / bandwidth).abs() < 1
    return (x > threshold) * grad_output, (-(threshold / bandwidth) * rectangle * grad_output).sum(0)


def jumprelu_backward__relu_gradient_for_x(x, threshold, bandwidth, grad_output):
    rectangle = ((x - threshold) / bandwidth).abs() < 0.5
    return (x > 0) * grad_output, (-(threshold / bandwidth) * rectangle * grad_output).sum(0)


def gated_forward__no_exp_on_r_mag(x, W_enc, b_gate, r_mag, b_mag, W_dec, b_dec):
    centred = x - b_dec
    acts = ((centred @ W_enc + b_gate) > 0) * torch.relu(centred @ (W_enc * r_mag) + b_mag)
    return acts, acts @ W_dec + b_dec


def gated_forward__relu_gate(x, W_enc, b_gate, r_mag, b_mag, W_dec, b_dec):
    centred = x - b_dec
    acts = torch.relu(centred @ W_enc + b_gate) * torch.relu(centred @ (W_enc * r_mag.exp()) + b_mag)
    return acts, acts @ W_dec + b_dec


def gated_forward__gate_bias_for_magnitude(x, W_enc, b_gate, r_mag, b_mag, W_dec, b_dec):
    centred = x - b_dec
    acts = ((centred @ W_enc + b_gate) > 0) * torch.relu(centred @ (W_enc * r_mag.exp()) + b_gate)
    return acts, acts @ W_dec + b_dec


def ce_loss_with_sae__splices_the_bos_too(model, tokens, hook_name, W_enc, b_enc, W_dec, b_dec):
    def hook(resid, hook):
        return sae_forward(resid, W_enc, b_enc, W_dec, b_dec)[1]

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, hook)]).item()


def ce_loss_with_sae__hook_returns_nothing(model, tokens, hook_name, W_enc, b_enc, W_dec, b_dec):
    def hook(resid, hook):
        sae_forward(resid[:, 1:], W_enc, b_enc, W_dec, b_dec)  # computed, never returned: the clean loss

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, hook)]).item()


def ce_loss_with_sae__decoder_bias_forgotten(model, tokens, hook_name, W_enc, b_enc, W_dec, b_dec):
    def hook(resid, hook):
        acts = torch.relu((resid[:, 1:] - b_dec) @ W_enc + b_enc)
        return torch.cat([resid[:, :1], acts @ W_dec], dim=1)

    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, hook)]).item()


def feature_logit_effects__bottom_by_magnitude(direction, W_U, k):
    effects = direction @ W_U
    return {"top": effects.topk(k).indices, "bottom": effects.abs().topk(k, largest=False).indices}


def feature_logit_effects__cosine_not_dot_product(direction, W_U, k):
    effects = direction @ F.normalize(W_U, dim=0)
    return {"top": effects.topk(k).indices, "bottom": (-effects).topk(k).indices}


def feature_logit_effects__unsorted(direction, W_U, k):
    effects = direction @ W_U
    return {"top": effects.topk(k, sorted=False).indices.sort().values, "bottom": (-effects).topk(k).indices}
