"""The TopK SAE (Gao et al. 2024): keep each token's k largest pre-activations; AuxK revives dead latents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from utils.references.chapter02 import auxk_loss, topk_activation
from utils.sae.base import Params, SAEConfig, decode_sparse, mse, pre_activations


@dataclass(frozen=True)
class TopK:
    """``activation_fn``/``aux_fn``: chapter 02's `topk_activation` and `auxk_loss` (the notebook passes the learner's)."""

    activation_fn: Callable = topk_activation
    aux_fn: Callable = auxk_loss
    name: str = "topk"
    saelens: str = "topk"

    def init(self, params: Params, cfg: SAEConfig) -> Params:
        return params

    def encode(self, params: Params, x: Tensor, k: int | None = None) -> Tensor:
        if k is None:
            raise ValueError("a TopK SAE needs its k (SAELens keeps it in cfg.json)")
        return self.activation_fn(pre_activations(params, x), k)

    def loss(self, params: Params, x: Tensor, cfg: SAEConfig, dead: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """MSE + aux_coeff · AuxK (k_aux = d_in / 2) on the latents dead for ``dead_window`` steps."""
        pre = pre_activations(params, x)
        acts = self.activation_fn(pre, cfg.k)
        x_hat = decode_sparse(params, acts, cfg.k)  # the k rows summed: twice as fast as the dense product
        loss = mse(x, x_hat)
        if dead.any():  # AuxK on the dead latents only (a small dense problem)
            every = torch.ones(int(dead.sum()), dtype=torch.bool, device=x.device)
            aux = self.aux_fn((x - x_hat).detach(), pre[:, dead], params["W_dec"][dead], every, x.shape[1] // 2)
            loss = loss + cfg.aux_coeff * aux
        return loss, acts, x_hat
