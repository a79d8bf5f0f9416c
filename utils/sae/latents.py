"""Reading one latent: its activation over text, and the contexts where it fires most."""

from __future__ import annotations

import html

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from utils.sae.base import Params
from utils.sae.model import encode


def latent_activations(
    model: HookedTransformer, tokens: Int[Tensor, "seq pos"], hook_name: str, params: Params, latent: int,
    k: int | None = None, batch_size: int = 16,
) -> Float[Tensor, "seq pos"]:
    """One latent's activation at every token (0 at the BOS position), stopping the forward pass early."""
    from utils.data import collect_activations

    acts = collect_activations(model, tokens, hook_name, batch_size, desc=f"latent {latent}").float()
    with torch.no_grad():
        values = encode(params, acts, k)[..., latent]
    return torch.cat([torch.zeros(len(tokens), 1), values], dim=1)


def max_activating_html(
    model: HookedTransformer, tokens: Int[Tensor, "seq pos"], values: Float[Tensor, "seq pos"], n: int = 6, window: int = 12,
    title: str = "",
) -> str:
    """HTML of the ``n`` top-activating tokens with ``window`` tokens of context, shaded by activation."""
    flat = values.flatten().topk(n)
    peak = max(flat.values[0].item(), 1e-9)
    rows = []
    for value, index in zip(flat.values.tolist(), flat.indices.tolist()):
        seq, pos = divmod(index, values.shape[1])
        spans = []
        for p in range(max(1, pos - window), min(values.shape[1], pos + 4)):
            text = html.escape(model.tokenizer.decode(tokens[seq, p])).replace("\n", "↵")
            alpha = max(0.0, values[seq, p].item() / peak)
            border = "border-bottom:2px solid black;" if p == pos else ""
            style = f"background:rgba(255,120,0,{alpha:.2f});{border}"
            spans.append(f'<span style="{style}" title="{values[seq, p]:.2f}">{text}</span>')
        rows.append(f"<div style='font-family:monospace;margin:2px 0'><b>{value:6.2f}</b>&nbsp; {''.join(spans)}</div>")
    return f"<div><b>{html.escape(title)}</b>{''.join(rows)}</div>"
