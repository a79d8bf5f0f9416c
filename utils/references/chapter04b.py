"""Section 04b's reference implementations — the one text of each exercise's solution.

`make release` copies each function into its solution cell of `solutions/04b_sae_probes.ipynb`; the
checks (`utils/chapter04b.py`) compare a learner's function with these on fixed cases.
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from utils.sae.model import encode


def pool(acts: Float[Tensor, "batch pos d"], mask: Bool[Tensor, "batch pos"], how: str = "mean") -> Float[Tensor, "batch d"]:
    """Mean (how="mean") or max (how="max") of each row's activations over its real tokens (mask True).

    Args:
        acts: activations of every position.
        mask: True on the positions to pool over (every row has at least one).
        how: "mean" or "max".
    Returns:
        One vector per row.
    """
    if how == "mean":
        total = einops.einsum(acts, mask.to(acts.dtype), "batch pos d, batch pos -> batch d")
        return total / mask.sum(-1, keepdim=True).to(acts.dtype)
    return acts.masked_fill(~mask[..., None], -torch.inf).amax(dim=1)


def sae_features(
    params: dict[str, Tensor], acts: Float[Tensor, "batch pos d_in"], mask: Bool[Tensor, "batch pos"], k: int
) -> Float[Tensor, "batch d_sae"]:
    """For every latent of a TopK SAE, the fraction of the row's real tokens on which it fires (> 0).

    Args:
        params: the SAE (W_enc [d_in, d_sae], b_enc, W_dec, b_dec), as in chapter 02.
        acts: activations of every position.
        mask: True on real tokens.
        k: the SAE's k (latents kept per token).
    """
    fired = (encode(params, acts, k=k) > 0).float()
    return (fired * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)


def train_probe(
    X: Float[Tensor, "n d"], y: Float[Tensor, " n"], l1: float, steps: int = 300, lr: float = 0.01
) -> tuple[Float[Tensor, " d"], Float[Tensor, ""]]:
    """Logistic regression, mean BCE + l1 * ||w||_1, full batch, Adam from w = 0, b = 0.

    Args:
        X: features, one row per example (standardised).
        y: labels, 0.0 or 1.0.
        l1: the penalty λ on the weights (not on the bias).
        steps: optimiser steps.
        lr: Adam's learning rate.
    Returns:
        (w, b): the weights [d] and the bias (a 0-d tensor).
    """
    w = torch.zeros(X.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.Adam([w, b], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.binary_cross_entropy_with_logits(X @ w + b, y) + l1 * w.abs().sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return w.detach(), b.detach()


def accuracy(w: Float[Tensor, " d"], b: Float[Tensor, ""], X: Float[Tensor, "n d"], y: Float[Tensor, " n"]) -> float:
    """Fraction of rows whose prediction (logit > 0 -> class 1) equals the label y (0.0 or 1.0)."""
    return ((X @ w + b > 0).float() == y).float().mean().item()


def select_latents(X: Float[Tensor, "n d"], y: Float[Tensor, " n"], k: int) -> Int[Tensor, " k"]:
    """Indices of the k columns with the largest |mean over class 1 - mean over class 0|, largest first."""
    difference = X[y == 1].mean(0) - X[y == 0].mean(0)
    return difference.abs().topk(k).indices
