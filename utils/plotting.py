"""Small matplotlib helpers shared by the chapters: every figure says what its axes are."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from jaxtyping import Float
from matplotlib.axes import Axes
from torch import Tensor


def heatmap(
    values: Float[Tensor, "rows cols"],
    title: str,
    xlabel: str,
    ylabel: str,
    cmap: str = "viridis",
    centered: bool = False,
    ax: Axes | None = None,
    colorbar_label: str = "",
) -> Axes:
    """Show a 2-D tensor as an image (rows down, columns across); ``centered`` uses a red-blue map around 0."""
    values = torch.as_tensor(values).detach().float().cpu()
    if ax is None:
        _, ax = plt.subplots(figsize=(min(2 + 0.35 * values.shape[1], 12), min(1.5 + 0.25 * values.shape[0], 9)))
    if centered:
        limit = values.abs().max().item() or 1.0
        image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    else:
        image = ax.imshow(values, cmap=cmap, aspect="auto")
    ax.figure.colorbar(image, ax=ax, label=colorbar_label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


def top_entries(values: Float[Tensor, "rows cols"], k: int = 5) -> list[tuple[int, int, float]]:
    """The k largest entries of a [layer, head] grid as (layer, head, value), largest first."""
    flat = values.flatten()
    top = flat.topk(k)
    cols = values.shape[1]
    return [(int(i) // cols, int(i) % cols, float(v)) for v, i in zip(top.values, top.indices)]
