"""Toy models of superposition (Elhage et al. 2022) and their training loop.

`ToyModel` (x -> ReLU(WᵀWx + b)) and `AbsModel` (a one-hidden-layer ReLU network trained to compute
|x|), many independent instances side by side, and `train_toy_models`, which builds and trains them.
The parameters, the forward pass, the batches, the loss and the training loop (`optimize`) are
chapter 01's reference implementations by default; the chapter's notebook passes the learner's own.
Chapter 02 uses these models as SAE training data with known features.
"""

from __future__ import annotations

from collections.abc import Callable

import einops
import torch
from jaxtyping import Float
from torch import Tensor, nn

from utils.device import one_thread
from utils.references.chapter01 import generate_batch, importance_weighted_loss, optimize, toy_forward, toy_parameters


class ToyModel(nn.Module):
    """``n_inst`` independent toy models x -> ReLU(WᵀWx + b), trained side by side.

    ``forward_fn`` is the forward pass as a function (the learner's `toy_forward` in the notebook),
    ``params_fn`` makes the initial W and b from a generator seeded with ``seed`` (the learner's
    `toy_parameters`).
    """

    def __init__(
        self,
        n_inst: int,
        n_features: int,
        d_hidden: int,
        forward_fn: Callable = toy_forward,
        seed: int = 0,
        params_fn: Callable = toy_parameters,
    ):
        super().__init__()
        self.W, self.b = params_fn(n_inst, n_features, d_hidden, torch.Generator().manual_seed(seed))
        self.forward_fn = forward_fn

    def forward(self, x: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst feats"]:
        return self.forward_fn(self.W, self.b, x)


class AbsModel(nn.Module):
    """Computation in superposition: y = ReLU(W2 ReLU(W1 x + b1) + b2), trained so that y ≈ |x|.

    A ReLU network computes |x_i| exactly with two neurons, ReLU(x_i) + ReLU(-x_i); with m neurons
    and no superposition that is m / 2 features. ``n_inst`` independent models side by side.
    """

    def __init__(self, n_inst: int, n_features: int, n_neurons: int, seed: int = 0, std: float = 0.02):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.W1 = nn.Parameter(torch.randn(n_inst, n_neurons, n_features, generator=generator) * std)
        self.W2 = nn.Parameter(torch.randn(n_inst, n_features, n_neurons, generator=generator) * std)
        self.b1 = nn.Parameter(torch.zeros(n_inst, n_neurons))
        self.b2 = nn.Parameter(torch.zeros(n_inst, n_features))

    def forward(self, x: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst feats"]:
        h = torch.relu(einops.einsum(self.W1, x, "inst neurons feats, batch inst feats -> batch inst neurons") + self.b1)
        return torch.relu(einops.einsum(self.W2, h, "inst feats neurons, batch inst neurons -> batch inst feats") + self.b2)


def signed(batch_fn: Callable) -> Callable:
    """A batch function whose present values get a random sign: uniform on [-1, 1] instead of [0, 1)."""

    def signed_batch(n_batch: int, probability: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = batch_fn(n_batch, probability, generator)
        return x * torch.where(torch.rand(x.shape, generator=generator) < 0.5, -1.0, 1.0)

    return signed_batch


def features_computed(model: AbsModel, tolerance: float = 0.2) -> list[int]:
    """How many features each instance computes |x_i| for: feature i alone, at 9 values from −1 to 1,
    must come out within ``tolerance`` of |x_i| every time."""
    n_inst, n_features = model.b2.shape
    values = torch.linspace(-1, 1, 9)
    x = torch.zeros(len(values), n_features, n_inst, n_features)  # [value, probed feature, inst, feats]
    probed = torch.arange(n_features)
    x[:, probed, :, probed] = einops.repeat(values, "v -> feats v inst", feats=n_features, inst=n_inst)
    with torch.no_grad():
        y = model(einops.rearrange(x, "v probe inst feats -> (v probe) inst feats"))
    y = einops.rearrange(y, "(v probe) inst feats -> v probe inst feats", v=len(values))
    own = y[:, probed, :, probed]  # [feats, v, inst]: feature i's output when only feature i is on
    error = (own - values.abs()[None, :, None]).abs().amax(dim=1)  # [feats, inst]
    return [int(n) for n in (error < tolerance).sum(0)]


def train_toy_models(
    n_features: int,
    d_hidden: int,
    feature_probability: Float[Tensor, " inst"],
    importance: Float[Tensor, " feats"] | Float[Tensor, "inst feats"],
    steps: int = 5_000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    forward_fn: Callable = toy_forward,
    batch_fn: Callable = generate_batch,
    loss_fn: Callable = importance_weighted_loss,
    desc: str = "training",
    W_init: Float[Tensor, "inst d_hidden feats"] | None = None,
    model: nn.Module | None = None,
    target_fn: Callable[[Tensor], Tensor] | None = None,
    decay: bool = False,
    params_fn: Callable = toy_parameters,
    train_fn: Callable = optimize,
) -> tuple[nn.Module, Float[Tensor, " inst"]]:
    """Train one toy model per entry of ``feature_probability`` (all features share it).

    ``importance`` is one value per feature (shared by all instances) or one per instance and feature.
    ``W_init`` replaces the random initial W (the bias always starts at zero). ``model`` trains
    another model (e.g. `AbsModel`) instead of a fresh `ToyModel`; ``target_fn`` maps the input
    to the target (default: the input itself, i.e. reconstruction).

    The training loop is ``train_fn`` (chapter 01's `optimize`): AdamW without weight decay, constant
    learning rate (or linear decay to 0 with ``decay``), a fresh batch every step from one generator
    seeded with ``seed``. Returns the model and each instance's final loss (averaged over the last
    100 steps).
    """
    n_inst = len(feature_probability)
    torch.manual_seed(seed)
    if model is None:
        model = ToyModel(n_inst, n_features, d_hidden, forward_fn, seed, params_fn)
    if W_init is not None:
        model.W.data.copy_(W_init)
    probability = einops.repeat(feature_probability.float(), "inst -> inst feats", feats=n_features)
    importance = importance.float()
    if importance.ndim == 1:  # one importance per feature, shared by all instances
        importance = einops.repeat(importance, "feats -> inst feats", inst=n_inst)
    options = dict(batch_size=batch_size, lr=lr, seed=seed, decay=decay, desc=desc)
    objective = loss_fn if target_fn is None else lambda x, x_hat, importance: loss_fn(target_fn(x), x_hat, importance)
    with one_thread(), torch.enable_grad():
        loss = train_fn(model, probability, importance, batch_fn, objective, steps, **options)
    return model, loss
