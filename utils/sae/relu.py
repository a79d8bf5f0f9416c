"""The standard ReLU SAE (Bricken et al. 2023): latents ReLU((x − b_dec) W_enc + b_enc), loss MSE + λ·Σ f_i‖W_dec,i‖."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from utils.references.chapter02 import sae_forward, sae_loss
from utils.sae.base import Params, SAEConfig


@dataclass(frozen=True)
class ReLU:
    """``forward_fn``/``loss_fn``: chapter 02's `sae_forward` and `sae_loss` (the notebook passes the learner's)."""

    forward_fn: Callable = sae_forward
    loss_fn: Callable = sae_loss
    name: str = "relu"
    saelens: str = "standard"

    def init(self, params: Params, cfg: SAEConfig) -> Params:
        return params

    def encode(self, params: Params, x: Tensor, k: int | None = None) -> Tensor:
        return self.forward_fn(x, params["W_enc"], params["b_enc"], params["W_dec"], params["b_dec"])[0]

    def loss(self, params: Params, x: Tensor, cfg: SAEConfig, dead: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        acts, x_hat = self.forward_fn(x, params["W_enc"], params["b_enc"], params["W_dec"], params["b_dec"])
        return self.loss_fn(x, acts, x_hat, params["W_dec"], cfg.l1_coeff)["loss"], acts, x_hat
