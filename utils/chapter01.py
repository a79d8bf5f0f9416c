"""Chapter 01 — Toy Models of Superposition (Elhage et al. 2022).

The chapter's reusable pieces (the toy model, its training loop, plots), the reference
implementations and its checks. The learner writes each function in
`solutions/01_superposition.ipynb`; `check.<name>(fn)` compares it with the reference below on the
fixed cases below. Everything runs on a CPU with torch only; no model is downloaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import einops
import matplotlib.pyplot as plt
import torch
from jaxtyping import Float
from matplotlib.axes import Axes
from torch import Tensor, nn
from tqdm.auto import tqdm

from utils.grading import Case, Checks, Exercise

# ---------------------------------------------------------------------------------------------
# Reference implementations (the learner writes their own in the notebook)


def toy_forward(
    W: Float[Tensor, "inst d_hidden feats"], b: Float[Tensor, "inst feats"], x: Float[Tensor, "batch inst feats"]
) -> Float[Tensor, "batch inst feats"]:
    hidden = einops.einsum(W, x, "inst d_hidden feats, batch inst feats -> batch inst d_hidden")
    out = einops.einsum(W, hidden, "inst d_hidden feats, batch inst d_hidden -> batch inst feats")
    return torch.relu(out + b)


def generate_batch(
    n_batch: int, feature_probability: Float[Tensor, "inst feats"], generator: torch.Generator | None = None
) -> Float[Tensor, "batch inst feats"]:
    shape = (n_batch, *feature_probability.shape)
    values = torch.rand(shape, generator=generator)
    present = torch.rand(shape, generator=generator) < feature_probability
    return torch.where(present, values, 0.0)


def importance_weighted_loss(
    x: Float[Tensor, "batch inst feats"], x_hat: Float[Tensor, "batch inst feats"], importance: Float[Tensor, "inst feats"]
) -> Float[Tensor, " inst"]:
    return einops.reduce(importance * (x - x_hat) ** 2, "batch inst feats -> inst feats", "mean").sum(-1)


def generate_correlated_batch(
    n_batch: int, feature_probability: Float[Tensor, "inst pairs"], generator: torch.Generator | None = None
) -> Float[Tensor, "batch inst feats"]:
    shape = (n_batch, *feature_probability.shape)
    present = torch.rand(shape, generator=generator) < feature_probability
    values = torch.rand((*shape, 2), generator=generator)
    x = torch.where(present[..., None], values, 0.0)
    return einops.rearrange(x, "batch inst pairs two -> batch inst (pairs two)")


def generate_anticorrelated_batch(
    n_batch: int, feature_probability: Float[Tensor, "inst pairs"], generator: torch.Generator | None = None
) -> Float[Tensor, "batch inst feats"]:
    shape = (n_batch, *feature_probability.shape)
    pair_present = torch.rand(shape, generator=generator) < 2 * feature_probability
    first = torch.rand(shape, generator=generator) < 0.5
    present = torch.stack([pair_present & first, pair_present & ~first], dim=-1)
    values = torch.rand((*shape, 2), generator=generator)
    x = torch.where(present, values, 0.0)
    return einops.rearrange(x, "batch inst pairs two -> batch inst (pairs two)")


def neuron_forward(
    W: Float[Tensor, "inst d_hidden feats"], b: Float[Tensor, "inst feats"], x: Float[Tensor, "batch inst feats"]
) -> Float[Tensor, "batch inst feats"]:
    hidden = torch.relu(einops.einsum(W, x, "inst d_hidden feats, batch inst feats -> batch inst d_hidden"))
    out = einops.einsum(W, hidden, "inst d_hidden feats, batch inst d_hidden -> batch inst feats")
    return torch.relu(out + b)


def _unit(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst d_hidden feats"]:
    return W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)


def feature_interference(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst feats"]:
    overlaps = einops.einsum(_unit(W), W, "inst d_hidden f_i, inst d_hidden f_j -> inst f_i f_j") ** 2
    return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)


def feature_dimensionality(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst feats"]:
    overlaps = einops.einsum(_unit(W), W, "inst d_hidden f_i, inst d_hidden f_j -> inst f_i f_j") ** 2
    return W.norm(dim=1) ** 2 / overlaps.sum(-1)


# ---------------------------------------------------------------------------------------------
# The toy model and its training loop (not graded; the notebook's demos use them)


class ToyModel(nn.Module):
    """``n_inst`` independent toy models x -> ReLU(WᵀWx + b), trained side by side.

    ``forward_fn`` is the forward pass as a function (the learner's `toy_forward` in the notebook).
    """

    def __init__(self, n_inst: int, n_features: int, d_hidden: int, forward_fn: Callable = toy_forward, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        std = math.sqrt(2.0 / (n_features + d_hidden))  # Xavier-normal, per instance
        self.W = nn.Parameter(torch.randn(n_inst, d_hidden, n_features, generator=generator) * std)
        self.b = nn.Parameter(torch.zeros(n_inst, n_features))
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
) -> tuple[nn.Module, Float[Tensor, " inst"]]:
    """Train one toy model per entry of ``feature_probability`` (all features share it).

    ``importance`` is one value per feature (shared by all instances) or one per instance and feature.
    ``W_init`` replaces the random initial W (the bias always starts at zero). ``model`` trains
    another model (e.g. `AbsModel`) instead of a fresh `ToyModel`; ``target_fn`` maps the input
    to the target (default: the input itself, i.e. reconstruction).

    AdamW (no weight decay, as in the paper's plain objective), constant learning rate (or linear
    decay to 0 with ``decay``), fresh batches every step. Returns the model and each instance's
    final loss (averaged over the last 100 steps).
    """
    n_inst = len(feature_probability)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if model is None:
        model = ToyModel(n_inst, n_features, d_hidden, forward_fn, seed)
    if W_init is not None:
        model.W.data.copy_(W_init)
    probability = einops.repeat(feature_probability.float(), "inst -> inst feats", feats=n_features)
    importance = importance.float()
    if importance.ndim == 1:  # one importance per feature, shared by all instances
        importance = einops.repeat(importance, "feats -> inst feats", inst=n_inst)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    recent = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these tensors are tiny: a second thread only adds waiting (and is badly slow on a busy machine)
    with torch.enable_grad():
        for step in (bar := tqdm(range(steps), desc=desc, mininterval=1.0)):
            if decay:
                optimizer.param_groups[0]["lr"] = lr * (1 - step / steps)
            x = batch_fn(batch_size, probability, generator)
            loss = loss_fn(x if target_fn is None else target_fn(x), model(x), importance)
            optimizer.zero_grad()
            loss.sum().backward()  # instances are independent: the sum trains each on its own loss
            optimizer.step()
            if step >= steps - 100:
                recent.append(loss.detach())
            if step % 500 == 0:
                bar.set_postfix(loss=f"{loss.mean().item():.4g}")
    torch.set_num_threads(threads)
    return model, torch.stack(recent).mean(0)


# ---------------------------------------------------------------------------------------------
# Measurements and plots used by the demos


def dimensions_per_feature(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, " inst"]:
    """The paper's D* = m / ||W||_F²: hidden dimensions per (fully) represented feature."""
    return W.shape[1] / W.pow(2).sum(dim=(1, 2))


def n_represented(W: Float[Tensor, "inst d_hidden feats"], threshold: float = 0.5) -> list[int]:
    """How many features each instance represents (column norm ||W_i|| above ``threshold``)."""
    return [int(n) for n in (W.norm(dim=1) > threshold).sum(-1)]


def plot_features_in_2d(
    W: Float[Tensor, "inst 2 feats"], titles: list[str], importance: Float[Tensor, " feats"] | None = None
) -> None:
    """One panel per instance: each feature's column W_i as a line from the origin (darker = more important)."""
    W = W.detach().cpu()
    n_inst, _, n_features = W.shape
    importance = torch.ones(n_features) if importance is None else importance.detach().cpu()
    rank = importance.argsort(descending=True).argsort()  # 0 = most important
    colors = plt.cm.viridis((rank / max(n_features - 1, 1)).numpy() * 0.85)
    fig, axes = plt.subplots(1, n_inst, figsize=(2.3 * n_inst, 2.6))
    for ax, w, title in zip(axes, W, titles, strict=True):
        for i in range(n_features):
            ax.plot([0, w[0, i]], [0, w[1, i]], color=colors[i], lw=1.5)
            ax.scatter(w[0, i], w[1, i], color=colors[i], s=18, zorder=3)
        ax.set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", title=title, xticks=[], yticks=[])
        ax.axhline(0, color="lightgray", lw=0.5, zorder=0)
        ax.axvline(0, color="lightgray", lw=0.5, zorder=0)
    fig.suptitle("columns W_i of W in the 2-D hidden space (darker = more important)", y=1.02)
    plt.tight_layout()


def plot_gram_and_norms(
    W: Float[Tensor, "inst d_hidden feats"],
    b: Float[Tensor, "inst feats"],
    interference: Float[Tensor, "inst feats"],
    titles: list[str],
) -> None:
    """Per instance: WᵀW (top), the bias b (middle) and ||W_i|| coloured by interference (bottom), as in the paper."""
    W, b, interference = W.detach().cpu(), b.detach().cpu(), interference.detach().cpu()
    n_inst, _, n_features = W.shape
    fig, axes = plt.subplots(3, n_inst, figsize=(2.6 * n_inst, 6.5), gridspec_kw={"height_ratios": [4, 0.5, 2.5]})
    for k in range(n_inst):
        gram = W[k].T @ W[k]
        axes[0, k].imshow(gram, cmap="RdBu_r", vmin=-1, vmax=1)
        axes[0, k].set(title=titles[k], xticks=[], yticks=[])
        axes[1, k].imshow(b[k][None], cmap="RdBu_r", vmin=-0.5, vmax=0.5, aspect="auto")
        axes[1, k].set(xticks=[], yticks=[])
        share = (interference[k] / (interference[k] + W[k].norm(dim=0) ** 2).clamp_min(1e-12)).clamp(0, 1)
        axes[2, k].barh(range(n_features), W[k].norm(dim=0), color=plt.cm.plasma(share.numpy() * 0.9))
        axes[2, k].set(xlim=(0, 1.3), ylim=(n_features - 0.5, -0.5), yticks=[], xlabel="||W_i||")
    axes[0, 0].set_ylabel("WᵀW")
    axes[1, 0].set_ylabel("b", rotation=0, labelpad=10)
    axes[2, 0].set_ylabel("feature (importance ↓)")
    fig.suptitle(
        "WᵀW (red +1, blue −1), bias b (red +0.5, blue −0.5), and ||W_i|| (dark = on its own, yellow = shares its direction)",
        y=1.0,
    )
    plt.tight_layout()


def plot_dimensionality(
    feature_probability: Float[Tensor, " inst"], dims: Float[Tensor, " inst"], per_feature: Float[Tensor, "inst feats"]
) -> Axes:
    """Dimensions per feature (line) and each feature's dimensionality (dots) against 1/(1-S) = 1/p."""
    x = (1 / feature_probability).detach().cpu()
    _, ax = plt.subplots(figsize=(8, 4))
    dots = per_feature.detach().cpu()
    xs = x[:, None].expand_as(dots).flatten()
    ax.scatter(xs, dots.flatten(), s=4, alpha=0.25, color="tab:gray", label="feature dimensionality D_i")
    ax.plot(x, dims.detach().cpu(), color="black", marker="o", ms=3, label="dimensions per feature m / ||W||_F²")
    for level, name in [(1, "1"), (0.5, "1/2"), (2 / 5, "2/5"), (1 / 3, "1/3")]:
        ax.axhline(level, color="tab:red", ls="--", lw=0.7)
        ax.text(1.01, level, name, va="center", color="tab:red", transform=ax.get_yaxis_transform())
    ax.set(xscale="log", xlabel="1 / (1 - S)  (= 1 / feature probability)", ylabel="dimensions per feature", ylim=(0, 1.1))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    return ax


def plot_neuron_weights(W: Float[Tensor, "inst d_hidden feats"], titles: list[str]) -> None:
    """One panel per instance: each neuron's row of W as a stacked bar, one colour per feature.

    Positive weights (features that excite the neuron) stack upwards, negative ones downwards;
    darker = more important (lower feature index).
    """
    W = W.detach().cpu()
    n_inst, d_hidden, n_features = W.shape
    colors = plt.cm.viridis(torch.linspace(0, 0.9, n_features).numpy())
    fig, axes = plt.subplots(1, n_inst, figsize=(3.2 * n_inst, 3.2))
    for ax, w, title in zip(axes, W, titles, strict=True):
        up, down = torch.zeros(d_hidden), torch.zeros(d_hidden)
        for i in range(n_features):
            pos, neg = w[:, i].clamp_min(0), w[:, i].clamp_max(0)
            ax.bar(range(d_hidden), pos, bottom=up, color=colors[i], width=0.7, label=f"feature {i}")
            ax.bar(range(d_hidden), neg, bottom=down, color=colors[i], width=0.7)
            up, down = up + pos, down + neg
        ax.axhline(0, color="black", lw=0.5)
        ax.set(title=title, xlabel="neuron", xticks=range(d_hidden))
    axes[0].set_ylabel("W[neuron, feature], stacked")
    axes[-1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7)
    fig.suptitle("weights of each neuron, one colour per feature (darker = more important)", y=1.02)
    plt.tight_layout()


def plot_abs_neurons(model: AbsModel, titles: list[str], n_features: int = 40) -> None:
    """One panel per instance: W1 (neurons × the first ``n_features`` features), red = excites, blue = inhibits.

    Neurons are sorted by the feature they weigh most; a feature computed the dense way has two
    neurons, one with a positive and one with a negative weight on it.
    """
    W1 = model.W1.detach()[..., :n_features]
    fig, axes = plt.subplots(1, len(W1), figsize=(3.6 * len(W1), 3.6))
    for ax, w, title in zip(axes, W1, titles, strict=True):
        w = w[w.abs().argmax(dim=-1).argsort()]
        limit = w.abs().max().item()
        ax.imshow(w.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set(title=title, xlabel="feature", ylabel="neuron (sorted)")
    fig.suptitle("W1 of the |x| models: which features each neuron reads", y=1.02)
    plt.tight_layout()


def plot_phase_diagram(
    phase: Float[Tensor, "density importance"],
    relative_importance: Float[Tensor, " importance"],
    density: Float[Tensor, " density"],
) -> None:
    """The paper's phase diagram: 0 = extra feature not represented, 1 = it gets the dimension, 2 = superposition."""
    from matplotlib.colors import ListedColormap

    colors = ["#d9d9d9", "#4c72b0", "#dd8452"]
    names = ["extra feature not represented", "extra feature gets the dimension", "both, in superposition (antipodal)"]
    _, ax = plt.subplots(figsize=(5.5, 4))
    ax.imshow(phase.detach().cpu(), cmap=ListedColormap(colors), vmin=-0.5, vmax=2.5, origin="upper")
    ax.set_xticks(range(len(relative_importance)), [f"{r:.2g}" for r in relative_importance.tolist()])
    ax.set_yticks(range(len(density)), [f"{d:.2g}" for d in density.tolist()])
    ax.set(xlabel="relative importance of the extra feature", ylabel="feature probability 1 - S")
    for color, name in zip(colors, names, strict=True):
        ax.scatter([], [], marker="s", s=60, color=color, label=name)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    ax.set_title("2 features in 1 dimension")


# ---------------------------------------------------------------------------------------------
# Checks: the cases every learner's function is run on


def _randn(seed: int, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _forward_case(seed: int, batch: int, inst: int, d_hidden: int, feats: int) -> tuple[Tensor, Tensor, Tensor]:
    W = _randn(seed, inst, d_hidden, feats, scale=0.6)
    b = _randn(seed + 1, inst, feats, scale=0.5)  # mixed signs, so the ReLU and the bias matter
    x = torch.rand(batch, inst, feats, generator=torch.Generator().manual_seed(seed + 2))
    return W, b, x


def _loss_case(seed: int, batch: int, inst: int, feats: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, inst, feats, generator=g)
    x_hat = x + 0.3 * torch.randn(batch, inst, feats, generator=g)
    importance = 0.9 ** torch.arange(feats).float() * torch.rand(inst, 1, generator=g).add(0.5)
    return x, x_hat, importance


def _polygon(k: int, n_inst: int = 1) -> Tensor:
    """k unit vectors evenly spaced on a circle: W of shape [n_inst, 2, k]."""
    angles = 2 * math.pi * torch.arange(k) / k
    return torch.stack([angles.cos(), angles.sin()])[None].expand(n_inst, 2, k).clone()


def _geometry_cases() -> list[Case]:
    identity_and_antipodal = torch.stack([torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.8, 0.3]])])
    return [
        Case((_randn(3, 2, 3, 6, scale=0.7),), "random W: 2 instances, 3 hidden dims, 6 features"),
        Case((torch.cat([_polygon(5), 0.5 * _polygon(5)]),), "a pentagon of unit vectors, and one of length 0.5"),
        Case((identity_and_antipodal,), "an antipodal pair and two overlapping features"),
        Case((_randn(4, 3, 5, 12, scale=1.3),), "random W: 3 instances, 5 hidden dims, 12 features", hidden=True),
    ]


BATCH_PROBABILITIES = torch.tensor([[1.0, 0.5, 0.2, 0.05], [0.9, 0.7, 0.3, 0.1], [0.02, 0.6, 0.8, 0.4]])
ZERO_FRACTION_TOLERANCE = 0.03  # ≈ 6 standard deviations of the difference of two 20,000-sample estimates
UNIFORM_TOLERANCE = 0.03


def _batch_problem(expected: Tensor, got: object, probability: Tensor) -> str | None:
    """Checks shared by the random-batch exercises: type, shape, range, zeros per feature, uniform values.

    ``expected`` is the reference's batch on the same inputs: its fraction of zeros per (instance,
    feature) estimates 1 - p. ``probability`` is each feature's p, only to word the message. The
    present values must look uniform on [0, 1): mean 1/2, std 1/√12.
    """
    if not isinstance(got, Tensor):
        return f"expected a torch.Tensor, got a {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"expected shape {tuple(expected.shape)} (n_batch, inst, feats), got shape {tuple(got.shape)}"
    if got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype}, got {got.dtype}"
    got = got.detach().cpu()
    if not torch.isfinite(got).all():
        return "some entries are NaN or infinite"
    if got.min() < 0 or got.max() >= 1:
        return f"values should lie in [0, 1), but they range from {got.min():.3g} to {got.max():.3g}"
    want_zero, got_zero = (expected == 0).float().mean(0), (got == 0).float().mean(0)
    wrong = (want_zero - got_zero).abs() > ZERO_FRACTION_TOLERANCE
    if wrong.any():
        inst, feat = (int(i) for i in wrong.nonzero()[0])
        return (
            f"instance {inst}, feature {feat}: {got_zero[inst, feat]:.3f} of the batch is zero, but with feature probability "
            f"{probability[inst, feat]:.2f} about {want_zero[inst, feat]:.3f} should be (1 - p; tolerance "
            f"{ZERO_FRACTION_TOLERANCE})"
        )
    for inst in range(got.shape[1]):
        present = got[:, inst][got[:, inst] != 0]
        if len(present) < 100:
            continue
        mean, std = present.mean().item(), present.std().item()
        if abs(mean - 0.5) > UNIFORM_TOLERANCE or abs(std - 1 / math.sqrt(12)) > UNIFORM_TOLERANCE:
            return (
                f"instance {inst}: the non-zero values have mean {mean:.3f} and std {std:.3f}; uniform values on [0, 1) "
                f"have mean 0.5 and std {1 / math.sqrt(12):.3f}"
            )
    return None


def _compare_batches(expected: Tensor, got: object) -> str | None:
    """A random batch can't match the reference's value by value; compare its statistics instead."""
    return _batch_problem(expected, got, BATCH_PROBABILITIES)


CORRELATED_PROBABILITIES = torch.tensor([[0.5, 0.2, 0.05], [0.9, 0.3, 0.1]])
ANTICORRELATED_PROBABILITIES = torch.tensor([[0.5, 0.2, 0.05], [0.4, 0.25, 0.1]])  # p <= 1/2: at most one of a pair
PAIR_DISAGREEMENT_TOLERANCE = 0.002  # the reference: 0 (a present value of exactly 0.0 has chance 2^-24)
VALUE_CORRELATION_TOLERANCE = 0.05  # ≈ 10 standard deviations for the ≈ 40,000 co-present pairs of the check


def _pairs_present(got: Tensor) -> Tensor:
    """(batch, inst, feats) -> (batch, inst, pairs, 2): whether each feature of each pair is present."""
    return einops.rearrange(got.detach().cpu() != 0, "batch inst (pairs two) -> batch inst pairs two", two=2)


def _compare_correlated(expected: Tensor, got: object) -> str | None:
    """Statistics of a correlated batch: as `generate_batch`, plus both-or-neither per pair, values independent."""
    problem = _batch_problem(expected, got, CORRELATED_PROBABILITIES.repeat_interleave(2, dim=-1))
    if problem is not None:
        return problem
    present = _pairs_present(got)
    disagree = (present[..., 0] != present[..., 1]).float().mean(0)
    if (disagree > PAIR_DISAGREEMENT_TOLERANCE).any():
        inst, pair = (int(i) for i in (disagree > PAIR_DISAGREEMENT_TOLERANCE).nonzero()[0])
        return (
            f"instance {inst}, pair {pair} (features {2 * pair} and {2 * pair + 1}): in {disagree[inst, pair]:.3f} of the "
            "batch exactly one of the two is present; correlated features are both present or both absent"
        )
    values = einops.rearrange(got.detach().cpu(), "batch inst (pairs two) -> batch inst pairs two", two=2)
    both = values[present.all(-1)]
    correlation = torch.corrcoef(both.T)[0, 1].item()
    if abs(correlation) > VALUE_CORRELATION_TOLERANCE:
        return (
            f"when a pair is present its two values have correlation {correlation:.2f}; only presence is shared, each value "
            f"is its own uniform draw (correlation ≈ 0, tolerance {VALUE_CORRELATION_TOLERANCE})"
        )
    return None


def _compare_anticorrelated(expected: Tensor, got: object) -> str | None:
    """Statistics of an anticorrelated batch: as `generate_batch` (each feature present with p), never both of a pair."""
    problem = _batch_problem(expected, got, ANTICORRELATED_PROBABILITIES.repeat_interleave(2, dim=-1))
    if problem is not None:
        return problem
    both = _pairs_present(got).all(-1).float().mean(0)
    if (both > 0).any():
        inst, pair = (int(i) for i in (both > 0).nonzero()[0])
        return (
            f"instance {inst}, pair {pair} (features {2 * pair} and {2 * pair + 1}): in {both[inst, pair]:.3f} of the batch "
            "both are present; anticorrelated features are never present together"
        )
    return None


EXERCISES = [
    Exercise(
        function="toy_forward",
        points=1,
        cases=lambda: [
            Case(_forward_case(0, batch=4, inst=3, d_hidden=2, feats=5), "3 instances, 5 features in 2 dims, batch 4"),
            Case(_forward_case(10, batch=7, inst=2, d_hidden=4, feats=6), "2 instances, 6 features in 4 dims, batch 7"),
            Case(_forward_case(20, batch=3, inst=2, d_hidden=5, feats=5), "square W (5 features in 5 dims)", hidden=True),
        ],
        reference=toy_forward,
        atol=1e-5,
        hint="h = W x per instance (contract over features), then ReLU(Wᵀ h + b): the bias goes inside the ReLU",
    ),
    Exercise(
        function="generate_batch",
        points=2,
        cases=lambda: [Case((20_000, BATCH_PROBABILITIES.clone()), "20,000 samples, 3 instances × 4 features, p from 0.02 to 1")],
        reference=generate_batch,
        compare=_compare_batches,
        hint="a feature is present (non-zero) with probability p, so zero with probability 1 - p; "
        "present values are torch.rand (uniform on [0, 1))",
    ),
    Exercise(
        function="importance_weighted_loss",
        points=1,
        cases=lambda: [
            Case(_loss_case(0, batch=8, inst=3, feats=5), "batch 8, 3 instances, 5 features"),
            Case(_loss_case(1, batch=5, inst=2, feats=7), "batch 5, 2 instances, 7 features"),
        ],
        reference=importance_weighted_loss,
        atol=1e-5,
        hint="weight each squared error by its feature's importance, sum over features, average over the batch",
    ),
    Exercise(
        function="feature_interference",
        points=1,
        cases=_geometry_cases,
        reference=feature_interference,
        atol=1e-5,
        hint="normalise W_i (not W_j), square the dot products, and leave out j = i",
    ),
    Exercise(
        function="feature_dimensionality",
        points=2,
        cases=_geometry_cases,
        reference=feature_dimensionality,
        atol=1e-5,
        hint="numerator ||W_i||²; denominator Σ_j (Ŵ_i·W_j)² over all j including i, with Ŵ_i = W_i / ||W_i||",
    ),
    Exercise(
        function="generate_correlated_batch",
        points=2,
        cases=lambda: [
            Case((20_000, CORRELATED_PROBABILITIES.clone()), "20,000 samples, 2 instances × 3 pairs, p from 0.05 to 0.9")
        ],
        reference=generate_correlated_batch,
        compare=_compare_correlated,
        hint="draw one presence per pair (shape n_batch, inst, pairs) and two independent values; "
        "pair k is features 2k and 2k+1 (einops: 'batch inst pairs two -> batch inst (pairs two)')",
    ),
    Exercise(
        function="generate_anticorrelated_batch",
        points=2,
        cases=lambda: [
            Case((20_000, ANTICORRELATED_PROBABILITIES.clone()), "20,000 samples, 2 instances × 3 pairs, p from 0.05 to 0.5")
        ],
        reference=generate_anticorrelated_batch,
        compare=_compare_anticorrelated,
        hint="a pair is active with probability 2p, and then exactly one of its two features (each with chance ½) is "
        "present, so each feature is present with probability p; pair k is features 2k and 2k+1",
    ),
    Exercise(
        function="neuron_forward",
        points=1,
        cases=lambda: [
            Case(_forward_case(30, batch=4, inst=3, d_hidden=2, feats=5), "3 instances, 5 features in 2 neurons, batch 4"),
            Case(_forward_case(40, batch=6, inst=2, d_hidden=4, feats=7), "2 instances, 7 features in 4 neurons, batch 6"),
        ],
        reference=neuron_forward,
        atol=1e-5,
        hint="h = ReLU(W x) (a ReLU on the hidden layer too), then ReLU(Wᵀ h + b)",
    ),
]

check = Checks(EXERCISES)
