"""`train_sae`: one trainer for every architecture (the architecture supplies the loss).

The trainer is chapter 02's exercise `train_sae` (`utils/references/chapter02.py`), itself made of the
chapter's `sae_training_step` (Adam; decoder rows at unit norm: the gradient's component along each
row removed before the step, the rows renormalised after it, as Bricken et al. do) and
`resample_in_training` (Bricken et al.'s resampling of dead latents, Adam's moments for them reset).
This module only picks the architecture's objective for a config: the library never re-implements
the loop. Batches are drawn without replacement from a fixed tensor of activations (any float
dtype; cast per batch); the learning rate is constant, then decays linearly over the last 20 % of steps.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from utils.device import default_device
from utils.references import chapter02 as ref
from utils.sae.base import Params, SAEConfig, init_params
from utils.sae.model import ARCHITECTURES

History = dict[str, list[float]]


def init_sae(d_in: int, cfg: SAEConfig, b_dec: Tensor | None = None) -> Params:
    """The initial tensors of ``cfg``'s SAE (a TopK SAE has a ReLU SAE's tensors)."""
    params = init_params(d_in, cfg.d_sae, b_dec, cfg.seed, cfg.tied_init, cfg.init_b_enc)
    return ARCHITECTURES[cfg.architecture].init(params, cfg)


def train_sae(
    activations: Float[Tensor, "n d_in"],
    cfg: SAEConfig,
    held_out: Float[Tensor, "m d_in"] | None = None,
    desc: str = "training SAE",
    progress: bool = True,
    device: str | None = None,
) -> tuple[Params, History]:
    """Train ``cfg``'s SAE on ``activations`` with chapter 02's `train_sae` and the reference pieces.

    Returns the trained tensors, on the CPU (JumpReLU's threshold as ``threshold``, as SAELens saves
    it), and a history of loss, L0, explained variance, dead fraction (and held-out explained variance,
    if ``held_out`` is given) every ``cfg.log_every`` steps. Training runs on ``device`` (default:
    `default_device()`, a GPU where there is one); the initial tensors are made on the CPU first, so a
    seed starts the same SAE everywhere.
    """
    device = device or default_device()
    activations = activations.to(device)
    held_out = held_out.to(device) if held_out is not None else None
    with torch.enable_grad():
        params, history = ref.train_sae(activations, cfg, ARCHITECTURES[cfg.architecture], held_out, desc if progress else None)
    params = {name: tensor.cpu() for name, tensor in params.items()}
    if "log_threshold" in params:
        params["threshold"] = params.pop("log_threshold").exp()
    return params, history
