"""The TopK SAE (Gao et al. 2024): keep each token's k largest pre-activations; AuxK revives dead latents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from utils.references.chapter02 import auxk_loss, topk_activation
from utils.sae.base import Params, SAEConfig, decode_sparse, mse, pre_activations

EVAL_ROWS = 2048  # rows per chunk when an evaluation without gradients is scored


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
        """MSE + aux_coeff · AuxK (k_aux = d_in / 2) on the latents dead for ``dead_window`` steps.

        Without gradients (the trainer's held-out measure) a large ``x`` is scored EVAL_ROWS rows at a time:
        the same loss (each chunk's mean weighted by its rows), latents and reconstruction, but the transient
        [rows, d_sae] tensors of one chunk instead of all rows' (8,192 × 4,608 floats are 151 MB each).
        """
        if not torch.is_grad_enabled() and len(x) > EVAL_ROWS:  # each chunk written into the outputs as it is made
            acts, x_hat, total = x.new_empty(len(x), params["W_enc"].shape[1]), torch.empty_like(x), x.new_zeros(())
            for start in range(0, len(x), EVAL_ROWS):
                loss, acts[start : start + EVAL_ROWS], x_hat[start : start + EVAL_ROWS] = self.loss(
                    params, x[start : start + EVAL_ROWS], cfg, dead)
                total += loss * len(x[start : start + EVAL_ROWS])
            return total / len(x), acts, x_hat
        pre = pre_activations(params, x)
        acts = self.activation_fn(pre, cfg.k)
        x_hat = decode_sparse(params, acts, cfg.k)  # the k rows summed: twice as fast as the dense product
        loss = mse(x, x_hat)
        if dead.any():  # AuxK on the dead latents only (a small dense problem)
            every = torch.ones(int(dead.sum()), dtype=torch.bool, device=x.device)
            aux = self.aux_fn((x - x_hat).detach(), pre[:, dead], params["W_dec"][dead], every, x.shape[1] // 2)
            loss = loss + cfg.aux_coeff * aux
        return loss, acts, x_hat
