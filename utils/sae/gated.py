"""The Gated SAE (Rajamanoharan et al. 2024): a gate decides which latents fire, a magnitude path how much."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from utils.references.chapter02 import gated_forward
from utils.sae.base import Params, SAEConfig, mse

GATED_KEYS = ["W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"]


@dataclass(frozen=True)
class Gated:
    """``forward_fn``: chapter 02's `gated_forward` (the notebook passes the learner's)."""

    forward_fn: Callable = gated_forward
    name: str = "gated"
    saelens: str = "gated"

    def init(self, params: Params, cfg: SAEConfig) -> Params:
        params = dict(params)
        d_sae = params["b_enc"].shape[0]
        params.update(b_gate=params.pop("b_enc"), r_mag=torch.zeros(d_sae), b_mag=torch.zeros(d_sae))
        return params

    def encode(self, params: Params, x: Tensor, k: int | None = None) -> Tensor:
        return self.forward_fn(x, *(params[name] for name in GATED_KEYS))[0]

    def loss(self, params: Params, x: Tensor, cfg: SAEConfig, dead: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """MSE + l1_coeff · ‖ReLU(π_gate)‖₁ weighted by ‖W_dec,i‖ + the gate path's reconstruction through
        the frozen decoder (which trains the gate, whose Heaviside step has no gradient)."""
        acts, x_hat = self.forward_fn(x, *(params[name] for name in GATED_KEYS))
        gate_acts = torch.relu((x - params["b_dec"]) @ params["W_enc"] + params["b_gate"])
        sparsity = (gate_acts * params["W_dec"].norm(dim=-1)).sum(-1).mean()
        aux = (x - gate_acts @ params["W_dec"].detach() - params["b_dec"].detach()).pow(2).sum(-1).mean()
        return mse(x, x_hat) + cfg.l1_coeff * sparsity + aux, acts, x_hat
