"""An SAE as a dict of tensors: which architecture it is, and encoding or running it.

The architecture is read from the tensors' names (Gated SAEs have ``b_gate``, JumpReLU SAEs a
threshold); a ReLU and a TopK SAE have the same tensors, so a TopK SAE is encoded with its ``k``
(SAELens keeps it in ``cfg.json``).
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from utils.sae.base import Architecture, Params, decode
from utils.sae.gated import Gated
from utils.sae.jumprelu import JumpReLUSAE
from utils.sae.relu import ReLU
from utils.sae.topk import TopK

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (ReLU(), TopK(), JumpReLUSAE(), Gated())}


def architecture_of(params: Params, k: int | None = None) -> Architecture:
    if "b_gate" in params:
        return ARCHITECTURES["gated"]
    if k is not None:
        return ARCHITECTURES["topk"]
    if "threshold" in params or "log_threshold" in params:
        return ARCHITECTURES["jumprelu"]
    return ARCHITECTURES["relu"]


def encode(params: Params, x: Float[Tensor, "batch d_in"], k: int | None = None) -> Float[Tensor, "batch d_sae"]:
    """Latent activations of any of the course's SAEs (``k`` set: a TopK SAE)."""
    return architecture_of(params, k).encode(params, x, k)


def run_sae(params: Params, x: Float[Tensor, "batch d_in"], k: int | None = None) -> tuple[Tensor, Tensor]:
    """(latents, reconstruction) for any of the course's SAEs."""
    acts = encode(params, x, k)
    return acts, decode(params, acts)
