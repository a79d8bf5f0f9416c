"""What every SAE architecture shares: the training config, the interface, initialisation, decoding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

Params = dict[str, Tensor]
ARCHITECTURES = ("relu", "topk", "jumprelu", "gated")
RESAMPLING = (None, "anthropic")


@dataclass(frozen=True)
class SAEConfig:
    """Everything `train_sae` needs besides the activations (SAELens keeps one config object too).

    ``architecture``: ``"relu"`` (Bricken et al.: MSE + l1_coeff·Σ f_i‖W_dec,i‖), ``"topk"`` (Gao et
    al.: keep the ``k`` largest, + aux_coeff·AuxK on latents dead for ``dead_window`` steps),
    ``"jumprelu"`` (MSE + l0_coeff·L0 through a straight-through estimator of width ``bandwidth``,
    thresholds starting at ``init_threshold``) or ``"gated"`` (MSE + l1_coeff·gate sparsity +
    the auxiliary reconstruction). ``resample``: None or ``"anthropic"`` (Bricken et al.): every
    ``resample_every`` steps (in the first 80 % of training) latents that have not fired for
    ``dead_window`` steps are resampled. ``tied_init``/``init_b_enc``: the encoder starts as the
    decoder transposed (Gao et al.) or independent, with bias ``init_b_enc``.
    """

    d_sae: int
    architecture: str = "relu"
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-3
    l1_coeff: float = 1.0
    k: int = 32
    aux_coeff: float = 1 / 32
    l0_coeff: float = 1.0
    bandwidth: float = 0.001
    init_threshold: float = 0.1
    resample: str | None = None
    resample_every: int = 1000
    dead_window: int = 500
    tied_init: bool = True
    init_b_enc: float = 0.0
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}: {', '.join(ARCHITECTURES)}")
        if self.resample not in RESAMPLING:
            raise ValueError(f"unknown resampling {self.resample!r}: None or 'anthropic'")


class Architecture(Protocol):
    """One SAE architecture: its extra tensors, its encoder and its training objective."""

    name: str  # the course's name ("relu")
    saelens: str  # SAELens's name for it ("standard")

    def init(self, params: Params, cfg: SAEConfig) -> Params:
        """The architecture's tensors, given the shared initial ones (`init_params`)."""
        ...

    def encode(self, params: Params, x: Float[Tensor, "batch d_in"], k: int | None) -> Float[Tensor, "batch d_sae"]: ...

    def loss(self, params: Params, x: Float[Tensor, "batch d_in"], cfg: SAEConfig, dead: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(training loss, latents, reconstruction) on a batch; ``dead`` marks latents dead for ``dead_window`` steps."""
        ...


def init_params(
    d_in: int, d_sae: int, b_dec: Tensor | None = None, seed: int = 0, tied: bool = True, b_enc: float = 0.0
) -> Params:
    """Unit-norm random decoder rows; encoder = decoder transposed (Gao et al.; ``tied=False``: an
    independent random encoder, as in early SAEs); encoder bias ``b_enc``; ``b_dec`` (e.g. the data's mean)."""
    generator = torch.Generator().manual_seed(seed)
    W_dec = F.normalize(torch.randn(d_sae, d_in, generator=generator), dim=-1)
    W_enc = W_dec.T.clone() if tied else F.normalize(torch.randn(d_in, d_sae, generator=generator), dim=0)
    return {
        "W_enc": W_enc,
        "b_enc": torch.full((d_sae,), float(b_enc)),
        "W_dec": W_dec,
        "b_dec": torch.zeros(d_in) if b_dec is None else b_dec.float().clone(),
    }


def pre_activations(params: Params, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
    """(x − b_dec) W_enc + b_enc, computed as x W_enc − (b_dec W_enc − b_enc): the same value, but b_dec's
    gradient then costs a vector-matrix product instead of a third [batch, d_sae] × [d_sae, d_in] matmul
    per training step (a third of a TopK step's time on a CPU)."""
    return x @ params["W_enc"] - (params["b_dec"] @ params["W_enc"] - params["b_enc"])


def decode(params: Params, acts: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_in"]:
    return acts @ params["W_dec"] + params["b_dec"]


def decode_sparse(params: Params, acts: Float[Tensor, "batch d_sae"], k: int) -> Float[Tensor, "batch d_in"]:
    """`decode` for latents with at most ``k`` non-zeros per row, as the sum of those ``k`` decoder rows.

    ``F.embedding_bag`` sums the rows without materialising [batch, k, d_in] (gathering them, or the dense
    [batch, d_sae] @ [d_sae, d_in] product, costs about twice as much on a CPU at k = 32, d_sae = 4,608:
    measured in `bench/sae.py`'s trainer row); its backward pass touches only those rows. Latents with more
    than ``k`` non-zeros in a row, or negative ones (an activation function that is not a TopK), are decoded
    densely: the result is ``acts @ W_dec + b_dec`` either way.
    """
    if bool((acts < 0).any()) or bool(((acts != 0).sum(-1) > k).any()):
        return decode(params, acts)
    indices = acts.detach().topk(k, dim=-1).indices  # every non-zero is positive: they are among the k largest
    summed = F.embedding_bag(indices, params["W_dec"], per_sample_weights=acts.gather(-1, indices), mode="sum")
    return summed + params["b_dec"]


def mse(x: Float[Tensor, "batch d_in"], x_hat: Float[Tensor, "batch d_in"]) -> Tensor:
    """Σ_d (x − x̂)², averaged over the batch."""
    return (x - x_hat).pow(2).sum(-1).mean()


def log_threshold(threshold: float, d_sae: int) -> Tensor:
    return torch.full((d_sae,), math.log(threshold))
