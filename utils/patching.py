"""Helpers for running a model with something changed inside it (TransformerLens hooks).

- `final_logits`: run the model from a layer on a given residual stream and unembed only the last
  position (unembedding every position of a 49,152-token vocabulary costs more than the layers);
- `after_bos`: a hook that replaces every position but the first (the BOS attention sink) with a
  function of it — splicing an SAE's reconstruction into the model, or ablating an activation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

Hook = Callable[[Tensor, HookPoint], Tensor]


def final_logits(
    model: HookedTransformer, resid: Float[Tensor, "batch pos d_model"], start_at_layer: int
) -> Float[Tensor, "batch 1 d_vocab"]:
    """The logits at the last position when the model runs from ``blocks.{start_at_layer}.hook_resid_pre``
    on with residual stream ``resid`` (hooks attached to the model apply as usual)."""
    out = model(resid, start_at_layer=start_at_layer, stop_at_layer=model.cfg.n_layers)
    return model.unembed(model.ln_final(out[:, -1:]))


def after_bos(fn: Callable[[Tensor], Tensor]) -> Hook:
    """A hook returning the activation with positions 1: replaced by ``fn(activation[:, 1:])`` (position
    0, the BOS, is kept: SAEs are trained without it, and its norm is a hundred times the others')."""

    def hook(activation: Tensor, hook: HookPoint) -> Tensor:
        return torch.cat([activation[:, :1], fn(activation[:, 1:])], dim=1)

    return hook
