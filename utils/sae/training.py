"""`train_sae`: one generic trainer for every architecture (the architecture supplies the loss).

Adam (β = 0.9, 0.999), constant learning rate with a linear decay over the last 20 % of steps,
batches drawn without replacement from a fixed tensor of activations (any float dtype; cast per
batch). Decoder rows are kept at unit norm: the gradient's component along each row is removed
before the step and the rows renormalised after it (Bricken et al.). Dead latents can be
resampled (Bricken et al.'s "anthropic" recipe, or fresh random directions).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from utils.data import batches
from utils.references.chapter02 import constrain_decoder, firing_stats, resample_dead_latents, sae_forward, sae_loss
from utils.references.chapter02 import variance_explained as variance_explained_of
from utils.sae.base import Params, SAEConfig, init_params
from utils.sae.model import ARCHITECTURES
from utils.sae.relu import ReLU

History = dict[str, list[float]]


def init_sae(d_in: int, cfg: SAEConfig, b_dec: Tensor | None = None) -> Params:
    """The initial tensors of ``cfg``'s SAE (a TopK SAE has a ReLU SAE's tensors)."""
    params = init_params(d_in, cfg.d_sae, b_dec, cfg.seed, cfg.tied_init, cfg.init_b_enc)
    return ARCHITECTURES[cfg.architecture].init(params, cfg)


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


def _resample(
    params: Params, optimizer: torch.optim.Optimizer, dead: Tensor, cfg: SAEConfig, seed: int, data, resample_fn: Callable
) -> None:
    """Resample the dead latents in place, and make Adam forget what it knew about them."""
    if cfg.resample == "simple":
        new = resample_simple({n: t.detach() for n, t in params.items()}, dead, seed)
    else:
        big = torch.cat([next(data) for _ in range(max(1, 8192 // cfg.batch_size))])
        new = resample_fn(big, params["W_enc"], params["b_enc"], params["W_dec"], params["b_dec"], dead, seed)
    for name in ["W_enc", "b_enc", "W_dec"]:
        params[name].copy_(new[name])
        state = optimizer.state.get(params[name], {})
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in state:
                if name == "W_enc":
                    state[moment][:, dead] = 0.0
                else:
                    state[moment][dead] = 0.0


def _log(history: History, step: int, loss: Tensor, acts: Tensor, x: Tensor, x_hat: Tensor, dead: Tensor) -> dict[str, str]:
    fve, l0 = variance_explained_of(x, x_hat), firing_stats(acts)["l0"]
    for name, value in [("step", step), ("loss", loss.item()), ("l0", l0), ("variance_explained", fve)]:
        history[name].append(value)
    history["dead_fraction"].append(dead.float().mean().item())
    return {"loss": f"{loss.item():.4g}", "L0": f"{l0:.1f}", "var_expl": f"{fve:.3f}"}


def train_sae(
    activations: Float[Tensor, "n d_in"],
    cfg: SAEConfig,
    forward_fn: Callable = sae_forward,
    loss_fn: Callable = sae_loss,
    resample_fn: Callable = resample_dead_latents,
    desc: str = "training SAE",
    progress: bool = True,
) -> tuple[Params, History]:
    """Train ``cfg``'s SAE on ``activations``; a plain function, reusable on any activations.

    ``forward_fn``/``loss_fn`` (ReLU SAEs) and ``resample_fn`` replace chapter 02's `sae_forward`,
    `sae_loss` and `resample_dead_latents` (the notebook passes the learner's). Returns the trained
    tensors (JumpReLU's threshold as ``threshold``) and a history of loss, L0, explained variance and
    dead fraction every ``cfg.log_every`` steps.
    """
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    sample = activations[torch.randperm(len(activations), generator=generator)[:8192]].float()
    params = {name: value.requires_grad_(True) for name, value in init_sae(activations.shape[1], cfg, sample.mean(0)).items()}
    architecture = ReLU(forward_fn, loss_fn) if cfg.architecture == "relu" else ARCHITECTURES[cfg.architecture]
    optimizer = torch.optim.Adam(params.values(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (cfg.steps - s) / max(1, 0.2 * cfg.steps)))
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.long)
    history: History = {"step": [], "loss": [], "l0": [], "variance_explained": [], "dead_fraction": []}
    data = batches(activations, cfg.batch_size, generator)
    bar = tqdm(range(cfg.steps), desc=desc, mininterval=1.0, disable=not progress)
    with torch.enable_grad():
        for step in bar:
            x = next(data)
            loss, acts, x_hat = architecture.loss(params, x, cfg, since_fired >= cfg.dead_window)
            optimizer.zero_grad()
            loss.backward()
            with torch.no_grad():
                _, params["W_dec"].grad = constrain_decoder(params["W_dec"], params["W_dec"].grad)
                optimizer.step()
                schedule.step()
                params["W_dec"].div_(params["W_dec"].norm(dim=-1, keepdim=True))
                since_fired = torch.where((acts != 0).any(0), 0, since_fired + 1)
                if cfg.resample and (step + 1) % cfg.resample_every == 0 and step < 0.8 * cfg.steps:
                    dead = since_fired >= cfg.dead_window
                    if dead.any():
                        _resample(params, optimizer, dead, cfg, cfg.seed + step, data, resample_fn)
                        since_fired[dead] = 0
                if step % cfg.log_every == 0 or step == cfg.steps - 1:
                    bar.set_postfix(_log(history, step, loss, acts, x, x_hat, since_fired >= cfg.dead_window))
    out = {name: t.detach().clone() for name, t in params.items()}
    if "log_threshold" in out:
        out["threshold"] = out.pop("log_threshold").exp()
    return out, history
