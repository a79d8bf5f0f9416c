"""Chapter 02's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/02_sparse_autoencoders.ipynb`;
the checks (`utils/chapter02.py`) compare a learner's function with these on fixed cases. They are
also the building blocks of the course's SAE library (`utils/sae/`): the SAEs that chapters 04a and
04b load are made of exactly this code.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.data import batches
from utils.sae.base import Architecture, SAEConfig, init_params


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
        chosen = torch.multinomial((loss**2).cpu(), n_dead, replacement=True, generator=torch.Generator().manual_seed(seed))
        direction = F.normalize(x[chosen] - x_hat[chosen], dim=-1)
        alive = ~dead
        enc_norm = W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)  # (all dead: unit scale)
        W_dec[dead] = direction
        W_enc[:, dead] = direction.T * 0.2 * enc_norm
        b_enc[dead] = 0.0
    return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec.clone()}


def sae_training_step(
    params: dict[str, Tensor],
    optimizer: torch.optim.Optimizer,
    x: Float[Tensor, "batch d_in"],
    loss_fn: Callable[[dict[str, Tensor], Tensor], tuple[Tensor, Tensor, Tensor]],
) -> tuple[Tensor, Float[Tensor, "batch d_sae"], Float[Tensor, "batch d_in"]]:
    """One optimiser step on the batch x that keeps the decoder rows at unit norm; returns
    (loss, latents, reconstruction), detached.

    loss_fn(params, x) gives (loss, latents, reconstruction). Clear the old gradients, backpropagate the
    loss, replace W_dec's gradient by its part orthogonal to the rows (`constrain_decoder`), let the
    optimizer step, then rescale every row of params["W_dec"] to norm 1, in place.
    """
    optimizer.zero_grad()
    loss, acts, x_hat = loss_fn(params, x)
    loss.backward()
    with torch.no_grad():
        _, params["W_dec"].grad = constrain_decoder(params["W_dec"], params["W_dec"].grad)
        optimizer.step()
        params["W_dec"].div_(params["W_dec"].norm(dim=-1, keepdim=True))
    return loss.detach(), acts.detach(), x_hat.detach()


def resample_in_training(
    params: dict[str, Tensor],
    optimizer: torch.optim.Adam,
    x: Float[Tensor, "batch d_in"],
    dead: Bool[Tensor, " d_sae"],
    seed: int,
) -> None:
    """Resample the dead latents of a training SAE in place, and make Adam forget what it knew about them.

    New values from `resample_dead_latents` on the batch x (with `seed`), copied into params' own
    tensors (the optimizer holds those); then, in optimizer.state[tensor], zero both running moments
    ("exp_avg", "exp_avg_sq") of the dead latents' entries: columns of W_enc, entries of b_enc, rows of W_dec.
    """
    with torch.no_grad():
        new = resample_dead_latents(x, params["W_enc"], params["b_enc"], params["W_dec"], params["b_dec"], dead, seed)
        for name in ["W_enc", "b_enc", "W_dec"]:
            params[name].copy_(new[name])
            state = optimizer.state.get(params[name], {})
            for moment in ("exp_avg", "exp_avg_sq"):
                if moment in state:
                    if name == "W_enc":
                        state[moment][:, dead] = 0.0
                    else:
                        state[moment][dead] = 0.0


def train_sae(
    activations: Float[Tensor, "n d_in"],
    cfg: SAEConfig,
    objective: Architecture | None = None,
    held_out: Float[Tensor, "m d_in"] | None = None,
    desc: str | None = "training SAE",
) -> tuple[dict[str, Tensor], dict[str, list[float]]]:
    """Train cfg's SAE on activations; returns (its tensors, detached, and the history of the training).

    objective: the architecture, with `objective.init(params, cfg)` and `objective.loss(params, x, cfg,
    dead)` → (loss, latents, reconstruction); by default your ReLU SAE, ReLU(sae_forward, sae_loss).

    Set up: generator = torch.Generator().manual_seed(cfg.seed); b_dec = the mean of 8,192 activations
    picked with torch.randperm(len(activations), generator=generator); the tensors of init_params(d_in,
    cfg.d_sae, b_dec, cfg.seed, cfg.tied_init, cfg.init_b_enc), through objective.init, moved to
    activations.device (a GPU's, if they are there), with gradients; the counts below there too;
    Adam(lr=cfg.lr) and a LambdaLR schedule, factor 1 then linear to 0 over the last 20 % of cfg.steps;
    batches(activations, cfg.batch_size, generator); per latent, a count of steps since it last fired.
    Each step: `sae_training_step` on the next batch (dead: count >= cfg.dead_window), the schedule's
    step, the counts. If cfg.resample, after every cfg.resample_every-th step in the first 80 % of
    cfg.steps, if a latent is dead: `resample_in_training` on the next max(1, 8192 // cfg.batch_size)
    batches, concatenated, with seed cfg.seed + step; the dead latents' counts back to 0.
    Every cfg.log_every steps and at the last: history["step"], ["loss"], ["l0"] and
    ["variance_explained"] (of that batch), ["dead_fraction"] and, if held_out is given (never trained
    on), ["held_out_variance_explained"]. desc: the progress bar's label (None: no bar).
    """
    if objective is None:
        from utils.sae.relu import ReLU  # (here, not at the top: the library imports this module)

        objective = ReLU(sae_forward, sae_loss)
    generator = torch.Generator().manual_seed(cfg.seed)
    sample = activations[torch.randperm(len(activations), generator=generator)[:8192]].float()
    start = init_params(activations.shape[1], cfg.d_sae, sample.mean(0), cfg.seed, cfg.tied_init, cfg.init_b_enc)
    params = {name: t.to(activations.device).requires_grad_(True) for name, t in objective.init(start, cfg).items()}
    optimizer = torch.optim.Adam(params.values(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (cfg.steps - s) / max(1, 0.2 * cfg.steps)))
    data = batches(activations, cfg.batch_size, generator)
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=activations.device)
    history = {key: [] for key in ["step", "loss", "l0", "variance_explained", "dead_fraction", "held_out_variance_explained"]}
    for step in tqdm(range(cfg.steps), desc=desc, disable=desc is None, mininterval=1.0):
        x = next(data)
        dead = since_fired >= cfg.dead_window
        loss, acts, x_hat = sae_training_step(
            params, optimizer, x, lambda p, batch, dead=dead: objective.loss(p, batch, cfg, dead)
        )
        schedule.step()
        since_fired = torch.where((acts != 0).any(0), 0, since_fired + 1)
        dead = since_fired >= cfg.dead_window
        if cfg.resample and (step + 1) % cfg.resample_every == 0 and step < 0.8 * cfg.steps and dead.any():
            more = torch.cat([next(data) for _ in range(max(1, 8192 // cfg.batch_size))])
            resample_in_training(params, optimizer, more, dead, cfg.seed + step)
            since_fired[dead] = 0
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            history["step"].append(step)
            history["loss"].append(loss.item())
            history["l0"].append(firing_stats(acts)["l0"])
            history["variance_explained"].append(variance_explained(x, x_hat))
            history["dead_fraction"].append((since_fired >= cfg.dead_window).float().mean().item())
            if held_out is not None:  # a batch at a time: 8,192 rows x d_sae latents at once would not fit Binder's memory
                with torch.no_grad():
                    held_hat = torch.cat([objective.loss(params, chunk.float(), cfg, since_fired >= cfg.dead_window)[2]
                                          for chunk in held_out.split(cfg.batch_size)])
                history["held_out_variance_explained"].append(variance_explained(held_out.float(), held_hat))
    return {name: tensor.detach().clone() for name, tensor in params.items()}, history


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


def steer_with_latent(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    hook_name: str,
    W_dec: Float[Tensor, "d_sae d_model"],
    latent: int,
    alpha: float,
) -> Float[Tensor, "batch d_vocab"]:
    """Next-token log-probabilities at the last position when alpha times latent's decoder row is added
    to the activation at hook_name, at every position (a TransformerLens hook)."""
    def steer(resid: Tensor, hook) -> Tensor:
        return resid + alpha * W_dec[latent]

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(hook_name, steer)])
    return logits[:, -1].log_softmax(dim=-1)
