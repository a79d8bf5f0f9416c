"""Chapter 02 — Sparse autoencoders: from toy models to a real language model, on a CPU, offline.

Bricken et al. 2023 (Towards Monosemanticity), Cunningham et al. 2023, Templeton et al. 2024,
Gao et al. 2024 (TopK), Rajamanoharan et al. 2024 (Gated, JumpReLU).

The chapter's reusable pieces (SAE initialisation, `train_sae`, metrics, evaluation by splicing
the SAE into the model, SAELens-format save/load, plots), the reference implementations and the
checks. SAEs are plain dicts of tensors with SAELens's key names: ``W_enc [d_in, d_sae]``,
``b_enc [d_sae]``, ``W_dec [d_sae, d_in]`` (row i is latent i's decoder direction), ``b_dec [d_in]``;
JumpReLU SAEs add ``threshold [d_sae]``; Gated SAEs use ``W_enc, b_gate, r_mag, b_mag, W_dec, b_dec``.
Everything runs on a CPU with torch; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import einops
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.grading import Case, Checks, Exercise, match

Params = dict[str, Tensor]
DENSE_FREQUENCY = 0.1  # a latent firing on more than 10% of tokens counts as dense

# ---------------------------------------------------------------------------------------------
# Reference implementations (the learner writes their own in the notebook)


def sae_forward(
    x: Float[Tensor, "batch d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    b_dec: Float[Tensor, " d_in"],
) -> tuple[Float[Tensor, "batch d_sae"], Float[Tensor, "batch d_in"]]:
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    return acts, acts @ W_dec + b_dec


def sae_loss(
    x: Float[Tensor, "batch d_in"],
    acts: Float[Tensor, "batch d_sae"],
    x_hat: Float[Tensor, "batch d_in"],
    W_dec: Float[Tensor, "d_sae d_in"],
    l1_coeff: float,
) -> dict[str, Tensor]:
    mse = (x - x_hat).pow(2).sum(-1).mean()
    sparsity = (acts * W_dec.norm(dim=-1)).sum(-1).mean()
    return {"loss": mse + l1_coeff * sparsity, "mse": mse, "sparsity": sparsity}


def constrain_decoder(
    W_dec: Float[Tensor, "d_sae d_in"], grad: Float[Tensor, "d_sae d_in"]
) -> tuple[Float[Tensor, "d_sae d_in"], Float[Tensor, "d_sae d_in"]]:
    unit = W_dec / W_dec.norm(dim=-1, keepdim=True)
    parallel = (grad * unit).sum(-1, keepdim=True) * unit
    return unit, grad - parallel


def feature_recovery(
    true_features: Float[Tensor, "n_features d_in"], W_dec: Float[Tensor, "d_sae d_in"]
) -> Float[Tensor, " n_features"]:
    cos = F.normalize(true_features, dim=-1) @ F.normalize(W_dec, dim=-1).T
    return cos.max(dim=-1).values


def variance_explained(x: Float[Tensor, "batch d_in"], x_hat: Float[Tensor, "batch d_in"]) -> float:
    residual = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    return (1 - residual / total).item()


def firing_stats(acts: Float[Tensor, "batch d_sae"], dense_frequency: float = DENSE_FREQUENCY) -> dict[str, Tensor | float]:
    fires = acts != 0
    frequency = fires.float().mean(0)
    return {
        "l0": fires.float().sum(-1).mean().item(),
        "frequency": frequency,
        "dead_fraction": (frequency == 0).float().mean().item(),
        "dense_fraction": (frequency > dense_frequency).float().mean().item(),
    }


def resample_dead_latents(
    x: Float[Tensor, "batch d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    b_dec: Float[Tensor, " d_in"],
    dead: Bool[Tensor, " d_sae"],
    seed: int = 0,
) -> dict[str, Tensor]:
    with torch.no_grad():
        _, x_hat = sae_forward(x, W_enc, b_enc, W_dec, b_dec)
        loss = (x - x_hat).pow(2).sum(-1)
        W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
        n_dead = int(dead.sum())
        if n_dead == 0 or loss.sum() == 0:
            return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec.clone()}
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.multinomial(loss**2, n_dead, replacement=True, generator=generator)
        direction = F.normalize(x[chosen] - x_hat[chosen], dim=-1)
        alive = ~dead
        enc_norm = W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
        W_dec[dead] = direction
        W_enc[:, dead] = direction.T * 0.2 * enc_norm
        b_enc[dead] = 0.0
    return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec.clone()}


def topk_activation(pre_acts: Float[Tensor, "batch d_sae"], k: int) -> Float[Tensor, "batch d_sae"]:
    values, indices = pre_acts.topk(k, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))


def auxk_loss(
    residual: Float[Tensor, "batch d_in"],
    pre_acts: Float[Tensor, "batch d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    dead: Bool[Tensor, " d_sae"],
    k_aux: int,
) -> Tensor:
    k = min(k_aux, int(dead.sum()))
    if k == 0:
        return pre_acts.new_zeros(())
    masked = pre_acts.masked_fill(~dead, -math.inf)
    values, indices = masked.topk(k, dim=-1)
    aux_acts = torch.zeros_like(pre_acts).scatter(-1, indices, torch.relu(values))
    return (residual - aux_acts @ W_dec).pow(2).sum(-1).mean()


def jumprelu_backward(
    x: Float[Tensor, "batch d_sae"],
    threshold: Float[Tensor, " d_sae"],
    bandwidth: float,
    grad_output: Float[Tensor, "batch d_sae"],
) -> tuple[Float[Tensor, "batch d_sae"], Float[Tensor, " d_sae"]]:
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
    centred = x - b_dec
    gate = (centred @ W_enc + b_gate) > 0
    magnitude = torch.relu(centred @ (W_enc * r_mag.exp()) + b_mag)
    acts = gate * magnitude
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
    def splice(resid: Tensor, hook) -> Tensor:
        _, x_hat = sae_forward(resid[:, 1:], W_enc, b_enc, W_dec, b_dec)
        return torch.cat([resid[:, :1], x_hat], dim=1)

    with torch.no_grad():
        loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, splice)])
    return loss.item()


def feature_logit_effects(
    direction: Float[Tensor, " d_model"], W_U: Float[Tensor, "d_model d_vocab"], k: int
) -> dict[str, Tensor]:
    effects = direction @ W_U
    return {"top": effects.topk(k).indices, "bottom": (-effects).topk(k).indices}


# ---------------------------------------------------------------------------------------------
# Custom autograd functions (JumpReLU's straight-through estimator)


class JumpReLU(torch.autograd.Function):
    """z ↦ z·H(z − θ), with the pseudo-derivative of Rajamanoharan et al. (2024) for θ.

    ``backward_fn`` computes the gradients (the learner's `jumprelu_backward` in the notebook).
    """

    @staticmethod
    def forward(ctx, x: Tensor, threshold: Tensor, bandwidth: float, backward_fn: Callable = jumprelu_backward) -> Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth, ctx.backward_fn = bandwidth, backward_fn
        return x * (x > threshold)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, threshold = ctx.saved_tensors
        grad_x, grad_threshold = ctx.backward_fn(x, threshold, ctx.bandwidth, grad_output)
        return grad_x, grad_threshold, None, None


class Step(torch.autograd.Function):
    """H(z − θ) for the L0 penalty: no gradient to z, −(1/ε)·K((z − θ)/ε) to θ."""

    @staticmethod
    def forward(ctx, x: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, threshold = ctx.saved_tensors
        rectangle = ((x - threshold) / ctx.bandwidth).abs() < 0.5
        return None, (-(1.0 / ctx.bandwidth) * rectangle * grad_output).sum(0), None


# ---------------------------------------------------------------------------------------------
# SAEs as dicts of tensors: initialisation, encoding, training


def init_sae(
    d_in: int, d_sae: int, architecture: str = "relu", b_dec: Tensor | None = None, seed: int = 0, threshold: float = 0.1,
    tied: bool = True, b_enc: float = 0.0,
) -> Params:
    """Unit-norm random decoder rows, encoder = decoder transposed (Gao et al.; ``tied=False``: an
    independent random encoder, as in early SAEs), encoder bias ``b_enc``."""
    generator = torch.Generator().manual_seed(seed)
    W_dec = F.normalize(torch.randn(d_sae, d_in, generator=generator), dim=-1)
    W_enc = W_dec.T.clone() if tied else F.normalize(torch.randn(d_in, d_sae, generator=generator), dim=0)
    params = {
        "W_enc": W_enc,
        "b_enc": torch.full((d_sae,), float(b_enc)),
        "W_dec": W_dec,
        "b_dec": torch.zeros(d_in) if b_dec is None else b_dec.float().clone(),
    }
    if architecture == "jumprelu":
        params["log_threshold"] = torch.full((d_sae,), math.log(threshold))
    if architecture == "gated":
        b_enc = params.pop("b_enc")
        params.update(b_gate=b_enc, r_mag=torch.zeros(d_sae), b_mag=torch.zeros(d_sae))
    return params


def architecture_of(params: Params) -> str:
    if "b_gate" in params:
        return "gated"
    if "threshold" in params or "log_threshold" in params:
        return "jumprelu"
    return "relu"


def pre_activations(params: Params, x: Tensor) -> Tensor:
    return (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]


def encode(params: Params, x: Float[Tensor, "batch d_in"], k: int | None = None, bandwidth: float = 0.001) -> Tensor:
    """Latent activations of any of the chapter's SAEs (``k`` set: a TopK SAE)."""
    arch = architecture_of(params)
    if arch == "gated":
        return gated_forward(x, *(params[n] for n in ["W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"]))[0]
    pre = pre_activations(params, x)
    if k is not None:
        return topk_activation(pre, k)
    if arch == "jumprelu":
        threshold = params["threshold"] if "threshold" in params else params["log_threshold"].exp()
        return pre * (pre > threshold)
    return torch.relu(pre)


def decode(params: Params, acts: Tensor) -> Tensor:
    return acts @ params["W_dec"] + params["b_dec"]


def run_sae(params: Params, x: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
    """(latents, reconstruction) for any of the chapter's SAEs."""
    acts = encode(params, x, k)
    return acts, decode(params, acts)


def resample_simple(params: Params, dead: Tensor, seed: int = 0) -> Params:
    """The simple recipe: give dead latents fresh random unit directions (encoder = decoder transposed)."""
    out = {name: value.clone() for name, value in params.items()}
    n = int(dead.sum())
    if n:
        fresh = F.normalize(torch.randn(n, out["W_dec"].shape[1], generator=torch.Generator().manual_seed(seed)), dim=-1)
        out["W_dec"][dead] = fresh
        out["W_enc"][:, dead] = fresh.T * out["W_enc"][:, ~dead].norm(dim=0).mean() if (~dead).any() else fresh.T
        out["b_enc"][dead] = 0.0
    return out


def _batches(data: Tensor, batch_size: int, generator: torch.Generator):
    while True:
        for idx in torch.randperm(len(data), generator=generator).split(batch_size):
            if len(idx) == batch_size:
                yield data[idx].float()


def train_sae(
    activations: Float[Tensor, "n d_in"],
    d_sae: int,
    architecture: str = "relu",
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    l1_coeff: float = 1.0,
    k: int = 32,
    aux_coeff: float = 1 / 32,
    l0_coeff: float = 1.0,
    bandwidth: float = 0.001,
    init_threshold: float = 0.1,
    resample: str | None = None,
    resample_every: int = 1000,
    dead_window: int = 500,
    tied_init: bool = True,
    init_b_enc: float = 0.0,
    seed: int = 0,
    forward_fn: Callable | None = None,
    loss_fn: Callable | None = None,
    resample_fn: Callable | None = None,
    desc: str = "training SAE",
    log_every: int = 50,
    progress: bool = True,
) -> tuple[Params, dict[str, list[float]]]:
    """Train an SAE on a fixed tensor of activations; a plain function, reusable on any activations.

    ``architecture``: ``"relu"`` (Bricken et al.: MSE + l1_coeff·Σ f_i‖W_dec,i‖, decoder rows kept at
    unit norm, the gradient's component along them removed), ``"topk"`` (Gao et al.: keep the k
    largest, + aux_coeff·AuxK on latents dead for ``dead_window`` steps, k_aux = d_in/2), ``"jumprelu"``
    (MSE + l0_coeff·L0 through the straight-through estimator, ``bandwidth`` ε) or ``"gated"`` (MSE +
    l1_coeff·‖ReLU(π_gate)‖₁·‖W_dec‖ + the auxiliary reconstruction through the frozen decoder).
    ``resample``: None, ``"simple"`` or ``"anthropic"``: every ``resample_every`` steps (in the first
    80 % of training), latents that have not fired for ``dead_window`` steps are resampled and Adam's
    state for them is reset. ``tied_init``/``init_b_enc``: see `init_sae`.
    ``forward_fn``/``loss_fn``/``resample_fn`` replace `sae_forward`, `sae_loss`,
    `resample_dead_latents` (the learner's, in the notebook).

    Adam (β = 0.9, 0.999), constant lr with a linear decay over the last 20 % of steps, batches drawn
    without replacement from ``activations`` (any float dtype; cast per batch).
    Returns the trained params (a dict of tensors; JumpReLU's as ``threshold``) and a history of
    loss, L0, explained variance and dead fraction every ``log_every`` steps.
    """
    forward_fn = forward_fn or sae_forward
    loss_fn = loss_fn or sae_loss
    resample_fn = resample_fn or resample_dead_latents
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    d_in = activations.shape[1]
    sample = activations[torch.randperm(len(activations), generator=generator)[:8192]].float()
    arch = architecture if architecture != "topk" else "relu"
    params = init_sae(d_in, d_sae, arch, sample.mean(0), seed, init_threshold, tied_init, init_b_enc)
    tensors = {name: value.requires_grad_(True) for name, value in params.items()}
    optimizer = torch.optim.Adam(tensors.values(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (steps - s) / max(1, 0.2 * steps)))
    since_fired = torch.zeros(d_sae, dtype=torch.long)
    history: dict[str, list[float]] = {"step": [], "loss": [], "l0": [], "variance_explained": [], "dead_fraction": []}
    data = _batches(activations, batch_size, generator)
    k_aux = d_in // 2
    bar = tqdm(range(steps), desc=desc, mininterval=1.0, disable=not progress)
    with torch.enable_grad():
        for step in bar:
            x = next(data)
            p = tensors
            if architecture == "relu":
                acts, x_hat = forward_fn(x, p["W_enc"], p["b_enc"], p["W_dec"], p["b_dec"])
                loss = loss_fn(x, acts, x_hat, p["W_dec"], l1_coeff)["loss"]
            elif architecture == "topk":
                pre = pre_activations(p, x)
                values, indices = pre.topk(k, dim=-1)
                acts = torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
                x_hat = decode(p, acts)  # dense: on a CPU faster than gathering the k rows (measured)
                loss = (x - x_hat).pow(2).sum(-1).mean()
                dead = since_fired >= dead_window
                if dead.any():  # AuxK on the dead latents only (a small dense problem)
                    ones = torch.ones(int(dead.sum()), dtype=torch.bool)
                    aux = auxk_loss((x - x_hat).detach(), pre[:, dead], p["W_dec"][dead], ones, k_aux)
                    loss = loss + aux_coeff * aux
            elif architecture == "jumprelu":
                pre = pre_activations(p, x)
                threshold = p["log_threshold"].exp()
                acts = JumpReLU.apply(pre, threshold, bandwidth)
                x_hat = decode(p, acts)
                l0 = Step.apply(pre, threshold, bandwidth).sum(-1).mean()
                loss = (x - x_hat).pow(2).sum(-1).mean() + l0_coeff * l0
            elif architecture == "gated":
                centred = x - p["b_dec"]
                pi_gate = centred @ p["W_enc"] + p["b_gate"]
                magnitude = torch.relu(centred @ (p["W_enc"] * p["r_mag"].exp()) + p["b_mag"])
                acts = (pi_gate > 0) * magnitude
                x_hat = decode(p, acts)
                gate_acts = torch.relu(pi_gate)
                sparsity = (gate_acts * p["W_dec"].norm(dim=-1)).sum(-1).mean()
                aux = (x - gate_acts @ p["W_dec"].detach() - p["b_dec"].detach()).pow(2).sum(-1).mean()
                loss = (x - x_hat).pow(2).sum(-1).mean() + l1_coeff * sparsity + aux
            else:
                raise ValueError(f"unknown architecture {architecture!r}: relu, topk, jumprelu or gated")
            optimizer.zero_grad()
            loss.backward()
            with torch.no_grad():
                # unit-norm decoder rows: no gradient along them, renormalised after the step (Bricken et al.)
                _, p["W_dec"].grad = constrain_decoder(p["W_dec"], p["W_dec"].grad)
                optimizer.step()
                schedule.step()
                p["W_dec"].div_(p["W_dec"].norm(dim=-1, keepdim=True))
                fired = (acts != 0).any(0)
                since_fired = torch.where(fired, 0, since_fired + 1)
                if resample and (step + 1) % resample_every == 0 and step < 0.8 * steps:
                    dead = since_fired >= dead_window
                    if dead.any():
                        if resample == "simple":
                            new = resample_simple({n: t.detach() for n, t in p.items()}, dead, seed + step)
                        else:
                            big = torch.cat([next(data) for _ in range(max(1, 8192 // batch_size))])
                            new = resample_fn(big, p["W_enc"], p["b_enc"], p["W_dec"], p["b_dec"], dead, seed + step)
                        for name in ["W_enc", "b_enc", "W_dec"]:
                            p[name].copy_(new[name])
                            state = optimizer.state.get(p[name], {})
                            for moment in ("exp_avg", "exp_avg_sq"):
                                if moment in state:  # Adam forgets what it knew about the resampled latents
                                    if name == "W_enc":
                                        state[moment][:, dead] = 0.0
                                    else:
                                        state[moment][dead] = 0.0
                        since_fired[dead] = 0
                if step % log_every == 0 or step == steps - 1:
                    fve = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
                    l0_now = (acts != 0).float().sum(-1).mean().item()
                    history["step"].append(step)
                    history["loss"].append(loss.item())
                    history["l0"].append(l0_now)
                    history["variance_explained"].append(fve.item())
                    history["dead_fraction"].append((since_fired >= dead_window).float().mean().item())
                    bar.set_postfix(loss=f"{loss.item():.4g}", L0=f"{l0_now:.1f}", var_expl=f"{fve.item():.3f}")
    out = {name: t.detach().clone() for name, t in tensors.items()}
    if "log_threshold" in out:
        out["threshold"] = out.pop("log_threshold").exp()
    return out, history


# ---------------------------------------------------------------------------------------------
# Measuring an SAE


def sae_metrics(
    params: Params, activations: Float[Tensor, "n d_in"], k: int | None = None, batch_size: int = 4096
) -> dict[str, float | Tensor]:
    """L0, explained variance, dead and dense fractions and per-latent firing frequency on ``activations``."""
    count = torch.zeros(params["W_dec"].shape[0])
    l0, residual, n = 0.0, 0.0, 0
    with torch.no_grad():
        mean = activations.float().mean(0)
        total = 0.0
        for start in range(0, len(activations), batch_size):
            x = activations[start : start + batch_size].float()
            acts, x_hat = run_sae(params, x, k)
            fires = acts != 0
            count += fires.sum(0)
            l0 += fires.sum().item()
            residual += (x - x_hat).pow(2).sum().item()
            total += (x - mean).pow(2).sum().item()
            n += len(x)
    frequency = count / n
    return {
        "l0": l0 / n,
        "variance_explained": 1 - residual / total,
        "dead_fraction": (frequency == 0).float().mean().item(),
        "dense_fraction": (frequency > DENSE_FREQUENCY).float().mean().item(),
        "frequency": frequency,
    }


def ce_losses(
    model: HookedTransformer, tokens: Int[Tensor, "seq pos"], hook_name: str, params: Params, k: int | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """Next-token CE loss: clean, with the SAE's reconstruction spliced in at ``hook_name`` (every
    position but the BOS), and with that activation zero-ablated; and the CE-loss recovered."""

    def splice(resid: Tensor, hook) -> Tensor:
        return torch.cat([resid[:, :1], run_sae(params, resid[:, 1:], k)[1]], dim=1)

    def zero(resid: Tensor, hook) -> Tensor:
        return torch.cat([resid[:, :1], torch.zeros_like(resid[:, 1:])], dim=1)

    totals = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    with torch.no_grad():
        for start in tqdm(range(0, len(tokens), batch_size), desc="CE loss: clean, SAE, zero-ablated", mininterval=1.0):
            batch = tokens[start : start + batch_size]
            weight = len(batch) / len(tokens)
            totals["clean"] += weight * model(batch, return_type="loss").item()
            totals["sae"] += weight * model.run_with_hooks(batch, return_type="loss", fwd_hooks=[(hook_name, splice)]).item()
            totals["zero"] += weight * model.run_with_hooks(batch, return_type="loss", fwd_hooks=[(hook_name, zero)]).item()
    totals["ce_recovered"] = (totals["zero"] - totals["sae"]) / (totals["zero"] - totals["clean"])
    return totals


# ---------------------------------------------------------------------------------------------
# Toy data with known features (a chapter-01 toy model in superposition)


def toy_hidden_batch(
    W: Float[Tensor, "d_hidden feats"], n_batch: int, feature_probability: float, generator: torch.Generator | None = None
) -> Float[Tensor, "batch d_hidden"]:
    """Hidden activations h = W x of a chapter-01 toy model, for sparse x as in chapter 01."""
    from utils.chapter01 import generate_batch

    x = generate_batch(n_batch, torch.full((1, W.shape[1]), feature_probability), generator)[:, 0]
    return x @ W.T


# ---------------------------------------------------------------------------------------------
# SAELens's on-disk format: cfg.json + sae_weights.safetensors

SAELENS_ARCHITECTURES = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}
SAELENS_KEYS = {
    "standard": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "topk": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "jumprelu": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"},
    "gated": {"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"},
}


def save_sae(params: Params, path: str | Path, k: int | None = None, metadata: dict | None = None) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` as SAELens 6 does (``SAE.save_model``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arch = "topk" if k is not None else SAELENS_ARCHITECTURES[architecture_of(params)]
    weights = {name: value.detach().float().contiguous() for name, value in params.items()}
    if "log_threshold" in weights:
        weights["threshold"] = weights.pop("log_threshold").exp()
    if set(weights) != SAELENS_KEYS[arch]:
        raise ValueError(f"a {arch} SAE has tensors {sorted(SAELENS_KEYS[arch])}, got {sorted(weights)}")
    d_sae, d_in = weights["W_dec"].shape
    cfg = {
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.54.12", "sae_lens_training_version": "6.54.12", **(metadata or {})},
        "architecture": arch,
    }
    if k is not None:
        cfg.update(k=k, rescale_acts_by_decoder_norm=False)
    save_file(weights, path / "sae_weights.safetensors")
    (path / "cfg.json").write_text(json.dumps(cfg, indent=2))
    return path


def load_sae(path: str | Path) -> tuple[Params, dict]:
    """Read an SAE saved by `save_sae` (or by SAELens): (params, cfg)."""
    from safetensors.torch import load_file

    path = Path(path)
    return load_file(path / "sae_weights.safetensors"), json.loads((path / "cfg.json").read_text())


def pretrained_sae(
    model: HookedTransformer, hook_name: str = "blocks.12.hook_resid_pre", d_sae: int = 1536, k: int = 32,
    n_seqs: int = 1200, steps: int = 600, verbose: bool = True,
) -> tuple[Params, dict]:
    """A TopK SAE on ``hook_name``, trained once with this chapter's recipe and then read from disk.

    The recipe is the notebook's (batch 512, lr 2e-3, dead window 200, seed 0) on the first ``n_seqs``
    corpus sequences of 128 tokens, minus the last 8,192 activations (or an eighth; held out). The SAE is saved in
    SAELens's format under ``cache_dir()/saes`` with its held-out metrics in ``cfg["metadata"]``, so
    later chapters load in a second what this chapter trains. Returns ``(params, cfg)``.
    """
    from utils.data import cached_activations
    from utils.models import cache_dir

    key = json.dumps([model.cfg.model_name, hook_name, d_sae, k, n_seqs, steps])
    folder = cache_dir() / "saes" / f"{hook_name}-topk{k}-{d_sae}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (folder / "cfg.json").exists():
        return load_sae(folder)
    start = time.perf_counter()
    activations = cached_activations(model, hook_name, seq_len=128, n_seqs=n_seqs, verbose=verbose)
    held = min(8192, len(activations) // 8)
    train, held_out = activations[:-held], activations[-held:]
    params, _ = train_sae(train, d_sae, "topk", k=k, steps=steps, batch_size=512, lr=2e-3, dead_window=200,
                          desc=f"SAE on {hook_name}", progress=verbose)
    metrics = sae_metrics(params, held_out, k)
    metadata = {"model_name": model.cfg.model_name, "hook_name": hook_name, "context_size": 128, "prepend_bos": True,
                **{name: round(float(metrics[name]), 4) for name in ["l0", "variance_explained", "dead_fraction"]}}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))  # its own: two processes may train at once
    save_sae(params, tmp, k=k, metadata=metadata)
    try:
        tmp.rename(folder)
    except OSError:  # another process finished first: keep its SAE (the same recipe and seed)
        shutil.rmtree(tmp)
    if verbose:
        print(f"Trained and cached an SAE on {hook_name} in {time.perf_counter() - start:.0f} s: {folder}")
    return load_sae(folder)


# ---------------------------------------------------------------------------------------------
# Interpreting latents


def latent_activations(
    model: HookedTransformer, tokens: Int[Tensor, "seq pos"], hook_name: str, params: Params, latent: int,
    k: int | None = None, batch_size: int = 16,
) -> Float[Tensor, "seq pos"]:
    """One latent's activation at every token (0 at the BOS position), stopping the forward pass early."""
    from utils.data import collect_activations

    acts = collect_activations(model, tokens, hook_name, batch_size, desc=f"latent {latent}").float()
    with torch.no_grad():
        values = encode(params, acts, k)[..., latent]
    return torch.cat([torch.zeros(len(tokens), 1), values], dim=1)


def max_activating_html(
    model: HookedTransformer, tokens: Int[Tensor, "seq pos"], values: Float[Tensor, "seq pos"], n: int = 6, window: int = 12,
    title: str = "",
) -> str:
    """HTML of the ``n`` top-activating tokens with ``window`` tokens of context, shaded by activation."""
    flat = values.flatten().topk(n)
    peak = max(flat.values[0].item(), 1e-9)
    rows = []
    for value, index in zip(flat.values.tolist(), flat.indices.tolist()):
        seq, pos = divmod(index, values.shape[1])
        spans = []
        for p in range(max(1, pos - window), min(values.shape[1], pos + 4)):
            text = html.escape(model.tokenizer.decode(tokens[seq, p])).replace("\n", "↵")
            alpha = max(0.0, values[seq, p].item() / peak)
            border = "border-bottom:2px solid black;" if p == pos else ""
            style = f"background:rgba(255,120,0,{alpha:.2f});{border}"
            spans.append(f'<span style="{style}" title="{values[seq, p]:.2f}">{text}</span>')
        rows.append(f"<div style='font-family:monospace;margin:2px 0'><b>{value:6.2f}</b>&nbsp; {''.join(spans)}</div>")
    return f"<div><b>{html.escape(title)}</b>{''.join(rows)}</div>"


def plot_density_histogram(frequencies: dict[str, Tensor], title: str = "feature density") -> None:
    """Histogram of log10(firing frequency) per latent, dead latents shown at the left edge."""
    _, ax = plt.subplots(figsize=(7, 3))
    for name, frequency in frequencies.items():
        dead = int((frequency == 0).sum())
        logs = frequency.clamp_min(1e-7).log10()
        ax.hist(logs.numpy(), bins=50, range=(-7, 0), alpha=0.6, label=f"{name} ({dead} dead at −7)")
    ax.set(xlabel="log10(firing frequency)", ylabel="latents", title=title)
    ax.legend(fontsize=8)


def plot_training(histories: dict[str, dict[str, list[float]]]) -> None:
    """Loss, L0 and explained variance during training, one line per run."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for name, hist in histories.items():
        for ax, key in zip(axes, ["loss", "l0", "variance_explained"]):
            ax.plot(hist["step"], hist[key], label=name)
    for ax, key in zip(axes, ["loss", "L0", "variance explained"]):
        ax.set(xlabel="step", title=key)
    axes[0].set_yscale("log")
    axes[-1].legend(fontsize=8)
    plt.tight_layout()


# ---------------------------------------------------------------------------------------------
# Checks: the cases every learner's function is run on


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sae_case(seed: int, batch: int, d_in: int, d_sae: int, unit: bool = False) -> tuple[Tensor, ...]:
    g = _g(seed)
    x = torch.randn(batch, d_in, generator=g)
    W_enc = torch.randn(d_in, d_sae, generator=g) / math.sqrt(d_in)
    b_enc = torch.randn(d_sae, generator=g) * 0.3
    W_dec = torch.randn(d_sae, d_in, generator=g) * torch.rand(d_sae, 1, generator=g).add(0.5)
    if unit:
        W_dec = F.normalize(W_dec, dim=-1)
    b_dec = torch.randn(d_in, generator=g)
    return x, W_enc, b_enc, W_dec, b_dec


def _loss_case(seed: int, batch: int, d_in: int, d_sae: int, l1: float) -> tuple:
    x, W_enc, b_enc, W_dec, b_dec = _sae_case(seed, batch, d_in, d_sae)
    acts, x_hat = sae_forward(x, W_enc, b_enc, W_dec, b_dec)
    return x, acts, x_hat, W_dec, l1


def _recovery_case(seed: int, n: int, d_in: int, d_sae: int) -> tuple[Tensor, Tensor]:
    g = _g(seed)
    true = torch.randn(n, d_in, generator=g) * torch.rand(n, 1, generator=g).add(0.5)
    W_dec = torch.randn(d_sae, d_in, generator=g) * 2
    W_dec[:n] = -true * 3 + 0.1 * torch.randn(n, d_in, generator=g)  # an anti-aligned copy: cos ≈ −1, not a match
    W_dec[n : 2 * n] = true * 0.5 + 0.3 * torch.randn(n, d_in, generator=g)  # imperfect, scaled copies
    return true, W_dec[torch.randperm(d_sae, generator=g)]


def _acts_case(seed: int, batch: int, d_sae: int) -> tuple[Tensor, ...]:
    g = _g(seed)
    p = torch.linspace(0, 0.6, d_sae)[torch.randperm(d_sae, generator=g)]
    p[:3] = torch.tensor([0.0, 0.0, 0.3])  # two dead latents, one dense
    fires = torch.rand(batch, d_sae, generator=g) < p
    return (torch.where(fires, torch.rand(batch, d_sae, generator=g) * 3 + 0.1, 0.0),)


def _compare_firing_stats(expected: dict, got: object) -> str | None:
    return match(expected, got, atol=1e-5, rtol=1e-5)


def _resample_case(seed: int, dead_latents: list[int], batch: int = 64) -> tuple:
    """An SAE that reconstructs inputs in span(e0..e3) exactly; 3 inputs leave a residual in e4/e5."""
    g = _g(seed)
    d_in, d_sae = 6, 8
    W_dec = torch.zeros(d_sae, d_in)
    W_dec[:4, :4] = torch.eye(4)
    W_dec[4:] = F.normalize(torch.randn(4, d_in, generator=g), dim=-1)
    W_enc = W_dec.T.clone() * 1.5
    W_enc[:, :4] = torch.eye(d_in)[:, :4]
    b_enc = torch.zeros(d_sae)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[dead_latents] = True
    b_enc[dead] = -100.0  # dead: never fire
    x = torch.rand(batch, d_in, generator=g) * (torch.arange(d_in) < 4)
    bad = torch.randperm(batch, generator=g)[:3]
    x[bad, 4:] = torch.randn(3, 2, generator=g) * torch.tensor([[3.0], [1.0], [0.2]])
    return x, W_enc, b_enc, W_dec, torch.zeros(d_in), dead, seed


def _compare_resample(expected: dict, got: object) -> str | None:
    """Behaviour, not random draws: alive latents untouched, each dead latent's decoder row the unit
    direction of a badly reconstructed input's residual, its encoder along it (0.2 × mean alive encoder
    norm), zero encoder bias, and it fires on that input."""
    x, W_enc0, b_enc0, W_dec0, b_dec0, dead, _ = expected["inputs"]
    expected = expected["output"]
    keys = {"W_enc", "b_enc", "W_dec", "b_dec"}
    if not isinstance(got, dict) or set(got) != keys:
        return f"expected a dict with keys {sorted(keys)}, got {sorted(got) if isinstance(got, dict) else type(got).__name__}"
    for name in keys:
        if not isinstance(got[name], Tensor) or got[name].shape != expected[name].shape:
            return f"{name}: expected a tensor of shape {tuple(expected[name].shape)}"
    alive = ~dead
    for name, before, cols in [("W_dec", W_dec0, False), ("W_enc", W_enc0, True), ("b_enc", b_enc0, False)]:
        now = got[name][:, alive] if cols else got[name][alive]
        was = before[:, alive] if cols else before[alive]
        if not torch.allclose(now, was, atol=1e-6):
            return f"{name} changed for latents that are alive; only dead latents are resampled"
    _, x_hat = sae_forward(x, W_enc0, b_enc0, W_dec0, b_dec0)
    residual = x - x_hat
    bad = residual.norm(dim=-1) > 1e-4
    directions = F.normalize(residual[bad], dim=-1)
    enc_norm = W_enc0[:, alive].norm(dim=0).mean()
    for latent in dead.nonzero().flatten().tolist():
        row = got["W_dec"][latent]
        if abs(row.norm().item() - 1) > 1e-4:
            return f"dead latent {latent}: its decoder row has norm {row.norm():.3g}; it should be a unit vector"
        cos = directions @ row
        if cos.max() < 1 - 1e-4:
            return (
                f"dead latent {latent}: its decoder row is not the direction of any badly reconstructed input's residual "
                "x − x̂ (sample inputs with probability ∝ loss², and use the normalised residual)"
            )
        direction = directions[cos.argmax()]
        enc = got["W_enc"][:, latent]
        if not torch.allclose(enc, direction * 0.2 * enc_norm, atol=1e-4):
            return (
                f"dead latent {latent}: its encoder column should be that direction times 0.2 × the mean alive encoder "
                f"column norm ({0.2 * enc_norm:.3g})"
            )
        if abs(got["b_enc"][latent].item()) > 1e-6:
            return f"dead latent {latent}: its encoder bias should be reset to 0, got {got['b_enc'][latent]:.3g}"
    acts, _ = sae_forward(x, got["W_enc"], got["b_enc"], got["W_dec"], got["b_dec"])
    if not (acts[:, dead] > 0).any(0).all():
        return "after resampling some dead latents still fire on no input"
    if not torch.equal(got["b_dec"], b_dec0):
        return "b_dec changed; resampling leaves it alone"
    return None


def _resample_reference(x, W_enc, b_enc, W_dec, b_dec, dead, seed=0):
    """The reference's output and the case's inputs, which `_compare_resample` needs."""
    inputs = (x, W_enc, b_enc, W_dec, b_dec, dead, seed)
    return {"output": resample_dead_latents(*inputs), "inputs": inputs}


def _topk_case(seed: int, batch: int, d_sae: int, k: int) -> tuple[Tensor, int]:
    pre = torch.randn(batch, d_sae, generator=_g(seed))
    pre[0] = -pre[0].abs() - 0.1  # one row entirely negative: the ReLU keeps none of its top k
    return pre, k


def _auxk_case(seed: int, batch: int, d_in: int, d_sae: int, n_dead: int, k_aux: int) -> tuple:
    g = _g(seed)
    residual = torch.randn(batch, d_in, generator=g)
    pre = torch.randn(batch, d_sae, generator=g) + 1  # mostly positive: more dead latents fire than k_aux allows
    pre[:, :4] += 3  # alive latents with large pre-activations must not be used
    W_dec = torch.randn(d_sae, d_in, generator=g)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[torch.randperm(d_sae - 4, generator=g)[:n_dead] + 4] = True
    return residual, pre, W_dec, dead, k_aux


def _jumprelu_case(seed: int, batch: int, d_sae: int, bandwidth: float) -> tuple:
    g = _g(seed)
    threshold = torch.rand(d_sae, generator=g) * 0.5 + 0.1
    # inputs on both sides of the threshold, many within the bandwidth window
    x = threshold + (torch.rand(batch, d_sae, generator=g) - 0.5) * 4 * bandwidth
    x[: batch // 2] = torch.randn(batch // 2, d_sae, generator=g)
    return x, threshold, bandwidth, torch.randn(batch, d_sae, generator=g)


def _gated_case(seed: int, batch: int, d_in: int, d_sae: int) -> tuple:
    g = _g(seed)
    x, W_enc, b_gate, W_dec, b_dec = _sae_case(seed, batch, d_in, d_sae)
    return x, W_enc, b_gate, torch.randn(d_sae, generator=g) * 0.5, torch.randn(d_sae, generator=g) * 0.3, W_dec, b_dec


def _ce_case(seed: int, n_seq: int, seq_len: int, d_sae: int) -> tuple:
    from utils.models import load_model

    model = load_model(verbose=False)
    g = _g(seed)
    tokens = torch.randint(100, 5000, (n_seq, seq_len), generator=g)
    tokens[:, 0] = model.tokenizer.bos_token_id
    d = model.cfg.d_model
    W_dec = F.normalize(torch.randn(d_sae, d, generator=g), dim=-1)
    W_enc = W_dec.T * 0.05
    b_enc = torch.zeros(d_sae)
    b_dec = torch.randn(d, generator=g)
    return model, tokens, "blocks.6.hook_resid_pre", W_enc, b_enc, W_dec, b_dec


def _logit_case(seed: int, k: int) -> tuple:
    from utils.models import load_model

    W_U = load_model(verbose=False).W_U
    return torch.randn(W_U.shape[0], generator=_g(seed)), W_U, k


EXERCISES = [
    Exercise(
        function="sae_forward",
        points=1,
        cases=lambda: [
            Case(_sae_case(0, 5, 4, 8), "batch 5, d_in 4, d_sae 8"),
            Case(_sae_case(1, 7, 6, 3), "batch 7, d_in 6, d_sae 3 (fewer latents than dimensions)"),
            Case(_sae_case(2, 3, 5, 12), "batch 3, d_in 5, d_sae 12", hidden=True),
        ],
        reference=sae_forward,
        atol=1e-5,
        hint="latents = ReLU((x − b_dec) W_enc + b_enc); reconstruction = latents W_dec + b_dec",
    ),
    Exercise(
        function="sae_loss",
        points=1,
        cases=lambda: [
            Case(_loss_case(3, 6, 4, 8, 0.3), "batch 6, d_in 4, d_sae 8, λ = 0.3 (decoder rows of varied norms)"),
            Case(_loss_case(4, 9, 5, 10, 2.0), "batch 9, d_in 5, d_sae 10, λ = 2"),
        ],
        reference=sae_loss,
        atol=1e-5,
        hint="mse = mean over the batch of Σ_d (x − x̂)²; sparsity = mean over the batch of Σ_i f_i ‖W_dec[i]‖; "
        "loss = mse + λ · sparsity",
    ),
    Exercise(
        function="constrain_decoder",
        points=1,
        cases=lambda: [
            Case((torch.randn(6, 4, generator=_g(5)) * 3, torch.randn(6, 4, generator=_g(6))), "6 latents, d_in 4"),
            Case((torch.randn(10, 7, generator=_g(7)) * 0.2, torch.randn(10, 7, generator=_g(8))), "10 latents, d_in 7"),
        ],
        reference=constrain_decoder,
        atol=1e-5,
        hint="normalise each ROW of W_dec (one per latent); remove from each row of the gradient its component "
        "along the unit row: g − (g·ŵ) ŵ",
    ),
    Exercise(
        function="feature_recovery",
        points=1,
        cases=lambda: [
            Case(_recovery_case(9, 5, 4, 16), "5 true features, 16 decoder rows (one anti-aligned copy of each)"),
            Case(_recovery_case(10, 8, 6, 20), "8 true features, 20 decoder rows"),
        ],
        reference=feature_recovery,
        atol=1e-5,
        hint="cosine similarity of every true feature with every decoder row (normalise both), then the max over "
        "decoder rows (an anti-aligned row has cosine −1: not a match)",
    ),
    Exercise(
        function="variance_explained",
        points=1,
        cases=lambda: [
            Case((torch.randn(50, 6, generator=_g(11)) + 4, torch.randn(50, 6, generator=_g(12)) * 0.5 + 4), "mean 4"),
            Case(
                (torch.randn(30, 3, generator=_g(13)) * torch.tensor([5.0, 1, 0.1]), torch.zeros(30, 3)),
                "x̂ = 0, scales 5, 1, 0.1",
            ),
        ],
        reference=variance_explained,
        atol=1e-5,
        hint="1 − Σ (x − x̂)² / Σ (x − mean_batch(x))², both sums over the batch and every dimension",
    ),
    Exercise(
        function="firing_stats",
        points=1,
        cases=lambda: [
            Case(_acts_case(14, 200, 12), "200 tokens, 12 latents (2 dead)"),
            Case(_acts_case(15, 50, 7), "50 tokens, 7 latents"),
        ],
        reference=firing_stats,
        compare=_compare_firing_stats,
        hint="a latent fires when its activation is non-zero; l0 = mean over tokens of the number firing; frequency = "
        "fraction of tokens each latent fires on; dead: frequency 0; dense: frequency > 0.1",
    ),
    Exercise(
        function="resample_dead_latents",
        points=2,
        cases=lambda: [
            Case(_resample_case(16, [4, 6]), "d_in 6, d_sae 8, latents 4 and 6 dead, 3 of 64 inputs badly reconstructed"),
            Case(_resample_case(17, [5, 6, 7]), "latents 5, 6, 7 dead"),
        ],
        reference=_resample_reference,
        compare=_compare_resample,
        hint="loss per input = Σ_d (x − x̂)²; draw one input per dead latent with probability ∝ loss² "
        "(torch.multinomial); decoder row = (x − x̂)/‖x − x̂‖, encoder column = that × 0.2 × mean alive encoder "
        "column norm, encoder bias 0",
    ),
    Exercise(
        function="topk_activation",
        points=1,
        cases=lambda: [
            Case(_topk_case(18, 6, 10, 3), "batch 6, d_sae 10, k = 3 (row 0 all negative)"),
            Case(_topk_case(19, 4, 32, 8), "batch 4, d_sae 32, k = 8"),
        ],
        reference=topk_activation,
        atol=1e-6,
        hint="keep the k largest pre-activations of each row (torch.topk), ReLU them, zeros elsewhere (scatter)",
    ),
    Exercise(
        function="auxk_loss",
        points=1,
        cases=lambda: [
            Case(_auxk_case(20, 5, 4, 12, n_dead=5, k_aux=3), "5 dead of 12 latents, k_aux = 3"),
            Case(_auxk_case(21, 6, 3, 10, n_dead=2, k_aux=4), "2 dead latents, k_aux = 4 (more than dead: use all dead)"),
        ],
        reference=auxk_loss,
        atol=1e-4,
        hint="only dead latents may be used: mask the others to −inf, keep the top min(k_aux, n_dead), ReLU, decode "
        "with W_dec (no bias), loss = mean over the batch of Σ_d (residual − ê)²",
    ),
    Exercise(
        function="jumprelu_backward",
        points=2,
        cases=lambda: [
            Case(_jumprelu_case(22, 40, 6, 0.05), "batch 40, 6 latents, bandwidth 0.05"),
            Case(_jumprelu_case(23, 30, 4, 0.2), "batch 30, 4 latents, bandwidth 0.2"),
        ],
        reference=jumprelu_backward,
        atol=1e-5,
        hint="grad_x = H(x − θ)·grad_output; grad_θ = Σ_batch −(θ/ε)·K((x − θ)/ε)·grad_output with K(u) = 1 for |u| < ½",
    ),
    Exercise(
        function="gated_forward",
        points=1,
        cases=lambda: [
            Case(_gated_case(24, 5, 4, 8), "batch 5, d_in 4, d_sae 8"),
            Case(_gated_case(25, 6, 6, 5), "batch 6, d_in 6, d_sae 5"),
        ],
        reference=gated_forward,
        atol=1e-5,
        hint="centred = x − b_dec; gate = (centred W_enc + b_gate > 0); magnitude = ReLU(centred (W_enc ⊙ exp(r_mag)) + "
        "b_mag); latents = gate · magnitude; x̂ = latents W_dec + b_dec",
    ),
    Exercise(
        function="ce_loss_with_sae",
        points=2,
        cases=lambda: [Case(_ce_case(26, 2, 12, 32), "2 sequences of 12 tokens, a random SAE at blocks.6.hook_resid_pre")],
        reference=ce_loss_with_sae,
        atol=1e-3,
        hint="a hook on hook_name returns the activation with positions 1: replaced by the SAE's reconstruction "
        "(position 0, the BOS, stays); model.run_with_hooks(tokens, return_type='loss', fwd_hooks=[...])",
    ),
    Exercise(
        function="feature_logit_effects",
        points=1,
        cases=lambda: [Case(_logit_case(27, 5), "a random direction, k = 5"), Case(_logit_case(28, 8), "k = 8")],
        reference=feature_logit_effects,
        hint="effects = direction @ W_U; top = indices of the k largest, largest first; bottom = indices of the k "
        "most negative, most negative first",
    ),
]

check = Checks(EXERCISES)


# ---------------------------------------------------------------------------------------------
# Small helpers for the notebook


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


__all__ = [name for name in dir() if not name.startswith("_")] + ["einops"]
