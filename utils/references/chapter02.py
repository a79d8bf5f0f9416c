"""Chapter 02's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/02_sparse_autoencoders.ipynb`;
the checks (`utils/chapter02.py`) compare a learner's function with these on fixed cases. They are
also the building blocks of the course's SAE library (`utils/sae/`): the SAEs that chapters 04a and
04b load are made of exactly this code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer


def sae_forward(
    x: Float[Tensor, "batch d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    b_dec: Float[Tensor, " d_in"],
) -> tuple[Float[Tensor, "batch d_sae"], Float[Tensor, "batch d_in"]]:
    """Latents f = ReLU((x − b_dec) W_enc + b_enc) and reconstruction x̂ = f W_dec + b_dec.

    Returns:
        (latents [batch, d_sae], reconstruction [batch, d_in]).
    """
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    return acts, acts @ W_dec + b_dec


def sae_loss(
    x: Float[Tensor, "batch d_in"],
    acts: Float[Tensor, "batch d_sae"],
    x_hat: Float[Tensor, "batch d_in"],
    W_dec: Float[Tensor, "d_sae d_in"],
    l1_coeff: float,
) -> dict[str, Tensor]:
    """{"loss": mse + l1_coeff · sparsity, "mse": ..., "sparsity": ...}, each a scalar tensor."""
    mse = (x - x_hat).pow(2).sum(-1).mean()
    sparsity = (acts * W_dec.norm(dim=-1)).sum(-1).mean()
    return {"loss": mse + l1_coeff * sparsity, "mse": mse, "sparsity": sparsity}


def constrain_decoder(
    W_dec: Float[Tensor, "d_sae d_in"], grad: Float[Tensor, "d_sae d_in"]
) -> tuple[Float[Tensor, "d_sae d_in"], Float[Tensor, "d_sae d_in"]]:
    """(W_dec with every row scaled to norm 1, grad minus its component along each row's unit direction)."""
    unit = W_dec / W_dec.norm(dim=-1, keepdim=True)
    return unit, grad - (grad * unit).sum(-1, keepdim=True) * unit


def variance_explained(x: Float[Tensor, "batch d_in"], x_hat: Float[Tensor, "batch d_in"]) -> float:
    """1 − Σ(x − x̂)² / Σ(x − mean(x))², sums over batch and dimensions, as a Python float."""
    return (1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


def firing_stats(acts: Float[Tensor, "batch d_sae"], dense_frequency: float = 0.1) -> dict:
    """{"l0": float, "frequency": Tensor [d_sae], "dead_fraction": float, "dense_fraction": float}.

    A latent fires on a token when its activation is non-zero. frequency[i] = fraction of the batch
    latent i fires on; dead: frequency 0; dense: frequency > dense_frequency.
    """
    fires = acts != 0
    frequency = fires.float().mean(0)
    return {
        "l0": fires.float().sum(-1).mean().item(),
        "frequency": frequency,
        "dead_fraction": (frequency == 0).float().mean().item(),
        "dense_fraction": (frequency > dense_frequency).float().mean().item(),
    }


def feature_recovery(
    true_features: Float[Tensor, "n_features d_in"], W_dec: Float[Tensor, "d_sae d_in"]
) -> Float[Tensor, " n_features"]:
    """For each true feature, the largest cosine similarity with any row of W_dec."""
    return (F.normalize(true_features, dim=-1) @ F.normalize(W_dec, dim=-1).T).max(dim=-1).values


def resample_dead_latents(
    x: Float[Tensor, "batch d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    b_dec: Float[Tensor, " d_in"],
    dead: Bool[Tensor, " d_sae"],
    seed: int = 0,
) -> dict[str, Tensor]:
    """Anthropic's resampling: {"W_enc", "b_enc", "W_dec", "b_dec"}, new tensors; alive latents unchanged.

    Draw one input per dead latent with probability ∝ loss² (loss = Σ_d (x − x̂)²), using
    torch.Generator().manual_seed(seed); decoder row = unit residual; encoder column = that × 0.2 ×
    mean alive encoder-column norm; encoder bias 0. b_dec is returned unchanged.
    """
    with torch.no_grad():
        _, x_hat = sae_forward(x, W_enc, b_enc, W_dec, b_dec)
        loss = (x - x_hat).pow(2).sum(-1)
        W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
        n_dead = int(dead.sum())
        if n_dead == 0 or loss.sum() == 0:
            return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec.clone()}
        chosen = torch.multinomial(loss**2, n_dead, replacement=True, generator=torch.Generator().manual_seed(seed))
        direction = F.normalize(x[chosen] - x_hat[chosen], dim=-1)
        alive = ~dead
        enc_norm = W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)  # (all dead: unit scale)
        W_dec[dead] = direction
        W_enc[:, dead] = direction.T * 0.2 * enc_norm
        b_enc[dead] = 0.0
    return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec.clone()}


def topk_activation(pre_acts: Float[Tensor, "batch d_sae"], k: int) -> Float[Tensor, "batch d_sae"]:
    """Keep each row's k largest pre-activations (ReLU'd), zero everywhere else."""
    values, indices = pre_acts.topk(k, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))


def auxk_loss(
    residual: Float[Tensor, "batch d_in"],
    pre_acts: Float[Tensor, "batch d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    dead: Bool[Tensor, " d_sae"],
    k_aux: int,
) -> Tensor:
    """Mean over the batch of ‖residual − ê‖², ê decoded from the top min(k_aux, n_dead) dead latents."""
    k = min(k_aux, int(dead.sum()))
    if k == 0:
        return pre_acts.new_zeros(())
    values, indices = pre_acts.masked_fill(~dead, -math.inf).topk(k, dim=-1)
    aux_acts = torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))
    return (residual - aux_acts @ W_dec).pow(2).sum(-1).mean()


def jumprelu_backward(
    x: Float[Tensor, "batch d_sae"],
    threshold: Float[Tensor, " d_sae"],
    bandwidth: float,
    grad_output: Float[Tensor, "batch d_sae"],
) -> tuple[Float[Tensor, "batch d_sae"], Float[Tensor, " d_sae"]]:
    """(grad_x = H(x − θ)·grad_output, grad_θ = Σ_batch −(θ/ε)·K((x − θ)/ε)·grad_output), K(u) = 1 for |u| < ½."""
    grad_x = (x > threshold) * grad_output
    rectangle = ((x - threshold) / bandwidth).abs() < 0.5
    grad_threshold = (-(threshold / bandwidth) * rectangle * grad_output).sum(0)
    return grad_x, grad_threshold


def gated_forward(
    x: Float[Tensor, "batch d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_gate: Float[Tensor, " d_sae"],
    r_mag: Float[Tensor, " d_sae"],
    b_mag: Float[Tensor, " d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    b_dec: Float[Tensor, " d_in"],
) -> tuple[Float[Tensor, "batch d_sae"], Float[Tensor, "batch d_in"]]:
    """(latents H(π_gate) · ReLU(π_mag), reconstruction latents W_dec + b_dec)."""
    centred = x - b_dec
    gate = (centred @ W_enc + b_gate) > 0
    acts = gate * torch.relu(centred @ (W_enc * r_mag.exp()) + b_mag)
    return acts, acts @ W_dec + b_dec


def ce_loss_with_sae(
    model: HookedTransformer,
    tokens: Int[Tensor, "seq pos"],
    hook_name: str,
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    b_dec: Float[Tensor, " d_in"],
) -> float:
    """Mean next-token CE loss with positions 1: of `hook_name` replaced by the (ReLU) SAE's reconstruction."""
    def splice(resid: Tensor, hook) -> Tensor:
        _, x_hat = sae_forward(resid[:, 1:], W_enc, b_enc, W_dec, b_dec)
        return torch.cat([resid[:, :1], x_hat], dim=1)

    with torch.no_grad():
        return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, splice)]).item()


def feature_logit_effects(
    direction: Float[Tensor, " d_model"], W_U: Float[Tensor, "d_model d_vocab"], k: int
) -> dict[str, Tensor]:
    """{"top": ids of the k largest entries of direction @ W_U (largest first),
    "bottom": ids of the k most negative (most negative first)}."""
    effects = direction @ W_U
    return {"top": effects.topk(k).indices, "bottom": (-effects).topk(k).indices}
