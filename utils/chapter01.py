"""Chapter 01 — Toy Models of Superposition (Elhage et al. 2022): measurements, plots and checks.

The toy models and their training loop are in `utils/toy_models.py`; the reference implementations
in `utils/references/chapter01.py`. The learner writes each function in the notebook;
`check.<name>(fn)` compares it with the reference on the fixed cases below. Everything runs on a
CPU with torch only; no model is downloaded.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable

import einops
import matplotlib.pyplot as plt
import torch
from jaxtyping import Float
from matplotlib.axes import Axes
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from utils.device import one_thread
from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise, describe
from utils.references import chapter01 as ref
from utils.toy_models import AbsModel

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


# ---------------------------------------------------------------------------------------------
# The model's parameters and its training loop, checked by what they do


def parameters_probe(params_fn: Callable, n_inst: int, n_features: int, d_hidden: int, seed: int) -> dict:
    """The probe of `toy_parameters`' check: its (W, b) for a generator seeded with ``seed``, W again for
    the same seed and for another one, and whether W and b are `nn.Parameter`s (a plain tensor is not trained)."""
    draws = [params_fn(n_inst, n_features, d_hidden, torch.Generator().manual_seed(s)) for s in (seed, seed, seed + 1)]
    for draw in draws:
        if not (isinstance(draw, (tuple, list)) and len(draw) == 2 and all(isinstance(t, Tensor) for t in draw)):
            return {"problem": f"expected a tuple (W, b) of two tensors, got {describe(draw)}"}
    (W, b), (W_again, _), (W_other, _) = (tuple(t.detach() for t in draw) for draw in draws)
    return {
        "problem": None,
        "W": W,
        "b": b,
        "parameters": [isinstance(t, nn.Parameter) for t in draws[0]],
        "same_seed_same_W": W.shape == W_again.shape and bool(torch.equal(W, W_again)),
        "other_seed_other_W": W.shape != W_other.shape or not torch.equal(W, W_other),
    }


STD_STANDARD_ERRORS = 6  # the tolerance on W's standard deviation, in standard errors of its estimate


def _compare_parameters(expected: dict, got: object) -> str | None:
    """W and b by what they are: shapes, parameters, b = 0, W's spread (Xavier-normal), one draw per instance."""
    if not isinstance(got, dict) or "problem" not in got:
        return f"expected a tuple (W, b), got {describe(got)}"
    if got["problem"]:
        return got["problem"]
    for name, dims in [("W", "n_inst, d_hidden, n_features"), ("b", "n_inst, n_features")]:
        want, have = expected[name], got[name]
        if tuple(have.shape) != tuple(want.shape):
            return f"{name} has shape {tuple(have.shape)}; expected {tuple(want.shape)} ({dims})"
        if have.dtype != want.dtype:
            return f"{name} has dtype {have.dtype}; expected {want.dtype}"
        if not torch.isfinite(have).all():
            return f"some entries of {name} are NaN or infinite"
    for name, is_parameter in zip("Wb", got["parameters"]):
        if not is_parameter:
            return (
                f"{name} is a plain tensor, not an nn.Parameter, so `model.parameters()` would not include it and it "
                "would never be trained"
            )
    W, b = got["W"], got["b"]
    if (b != 0).any():
        return f"b should start at zero, but its entries range from {b.min():.3g} to {b.max():.3g}"
    n_inst, d_hidden, n_features = W.shape
    std, tolerance = math.sqrt(2 / (n_features + d_hidden)), STD_STANDARD_ERRORS / math.sqrt(2 * W.numel())
    if abs(W.std().item() / std - 1) > tolerance:
        size = "large" if W.std().item() > std else "small"
        return (
            f"W's entries have standard deviation {W.std():.3f}, too {size}: Xavier-normal for a {d_hidden} × {n_features} "
            f"matrix has sqrt(2 / (n_features + d_hidden)) = {std:.3f} (tolerance ±{tolerance:.0%})"
        )
    if abs(W.mean().item()) > STD_STANDARD_ERRORS * std / math.sqrt(W.numel()):
        return f"W's entries have mean {W.mean():.3f}; they should be centred on 0"
    if n_inst > 1 and torch.equal(W, W[:1].expand_as(W)):
        return "every instance has the same W; each instance is its own model and needs its own random draw"
    if not got["same_seed_same_W"]:
        return "two calls with generators of the same seed gave different W: draw W with generator=generator"
    if not got["other_seed_other_W"]:
        return "generators of different seeds gave the same W: draw W from the generator you are given"
    return None


class _CheckedToyModel(nn.Module):
    """The loop check's own toy model, x -> ReLU(WᵀWx + b) from a given initial W (the references are withheld
    while grading, and the check must not depend on the learner's other exercises)."""

    def __init__(self, W_init: Float[Tensor, "inst d_hidden feats"]):
        super().__init__()
        self.W = nn.Parameter(W_init.clone())
        self.b = nn.Parameter(torch.zeros(W_init.shape[0], W_init.shape[2]))

    def forward(self, x: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst feats"]:
        h = einops.einsum(self.W, x, "inst d_hidden feats, batch inst feats -> batch inst d_hidden")
        return torch.relu(einops.einsum(self.W, h, "inst d_hidden feats, batch inst d_hidden -> batch inst feats") + self.b)


def _sparse_batch(n_batch: int, probability: Tensor, generator: torch.Generator | None) -> Tensor:
    shape = (n_batch, *probability.shape)
    present = torch.rand(shape, generator=generator) < probability
    return torch.rand(shape, generator=generator) * present


def _weighted_loss(x: Tensor, x_hat: Tensor, importance: Tensor) -> Tensor:
    return (importance * (x - x_hat) ** 2).mean(0).sum(-1)


EVAL_BATCH = 8192


def optimize_probe(
    train_fn: Callable,
    W_init: Tensor,
    feature_probability: Tensor,
    importance: Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    decay: bool,
) -> dict:
    """The probe of `optimize`'s check: trains the check's toy model with ``train_fn``, the check's batches and
    loss, and records what the loop did (batches drawn, losses computed, each optimizer step's learning rate,
    which tensors the optimizer trains) and the loss on fresh data before and after."""
    model = _CheckedToyModel(W_init)
    seen: dict = {"batches": 0, "wrong_probability": 0, "losses": 0, "wrong_importance": 0, "lrs": [], "trained": set()}
    sums = set()

    def batch_fn(n_batch: int, probability: Tensor, generator: torch.Generator | None = None) -> Tensor:
        seen["batches"] += 1
        given = isinstance(probability, Tensor) and probability.shape == feature_probability.shape
        seen["wrong_probability"] += not (given and torch.equal(probability, feature_probability))
        x = _sparse_batch(n_batch, probability, generator)
        sums.add(x.sum().item())
        return x

    def loss_fn(x: Tensor, x_hat: Tensor, weights: Tensor) -> Tensor:
        seen["losses"] += 1
        given = isinstance(weights, Tensor) and weights.shape == importance.shape
        seen["wrong_importance"] += not (given and torch.equal(weights, importance))
        return _weighted_loss(x, x_hat, weights)

    def on_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        seen["lrs"].append(float(optimizer.param_groups[0]["lr"]))
        seen["trained"] |= {id(p) for group in optimizer.param_groups for p in group["params"]}

    x_eval = _sparse_batch(EVAL_BATCH, feature_probability, torch.Generator().manual_seed(seed + 1000))

    def eval_loss() -> Tensor:
        with torch.no_grad():
            return _weighted_loss(x_eval, model(x_eval), importance)

    before = eval_loss()
    handle = register_optimizer_step_pre_hook(on_step)
    try:  # quietly: a terminal shows no progress bar of the check's run
        with one_thread(), torch.enable_grad(), contextlib.redirect_stderr(io.StringIO()):
            returned = train_fn(
                model, feature_probability.clone(), importance.clone(), batch_fn, loss_fn, steps,
                batch_size=batch_size, lr=lr, seed=seed, decay=decay, desc="check",
            )  # fmt: skip
    finally:
        handle.remove()
    return {
        "returned": returned.detach() if isinstance(returned, Tensor) else returned,
        "W": model.W.detach(),
        "loss_before": before,
        "loss_after": eval_loss(),
        "probability": feature_probability[:, 0],
        "lr": lr,
        "decay": decay,
        "steps": steps,
        "lrs": torch.tensor(seen["lrs"], dtype=torch.float64),
        "trains": [id(model.W) in seen["trained"], id(model.b) in seen["trained"]],
        "distinct_batches": len(sums),
        **{key: seen[key] for key in ["batches", "wrong_probability", "losses", "wrong_importance"]},
    }


LOSS_TOLERANCE = 0.25  # a group of instances may end with a mean loss up to 25 % above the reference's
RETURNED_TOLERANCE = 0.35  # the returned loss (a training-time average) against the loss on fresh data
SHARE_OF_INSTANCES = 0.75  # a local optimum may catch one instance in four
MIN_GROUP = 4  # the shapes are checked in groups of at least 4 instances (in fewer, one local optimum decides)


def _arrangement(w: Tensor) -> tuple[list[int], list[float]]:
    """The features a 2-D instance represents (||W_i|| > 0.5) and the angles between neighbouring ones."""
    kept = (w.norm(dim=0) > 0.5).nonzero().flatten()
    angles = torch.atan2(w[1, kept], w[0, kept]).rad2deg().sort().values
    return kept.tolist(), torch.diff(torch.cat([angles, angles[:1] + 360])).tolist() if len(kept) else []


def _stores(kept: list[int], gaps: list[float], dense: bool) -> bool:
    """Dense: features 0 and 1 only, at right angles. Sparse: all five, each 72° from its neighbours."""
    if dense:
        return kept == [0, 1] and abs(min(gaps) - 90) < 12
    return kept == list(range(5)) and all(abs(gap - 72) < 12 for gap in gaps)


def _geometry_problem(W: Tensor, W_reference: Tensor, probability: Tensor) -> str | None:
    """5 features in 2 dims: dense instances keep features 0 and 1 at right angles, sparse ones (p <= 0.05) a
    pentagon — checked for each group of at least `MIN_GROUP` instances in which the reference's loop gets there
    (in a short run it may not)."""
    for dense in [True, False]:
        group = (probability == 1 if dense else probability <= 0.05).nonzero().flatten().tolist()
        arrangements = [_arrangement(W[k]) for k in group]
        good = sum(_stores(kept, gaps, dense) for kept, gaps in arrangements)
        needed = SHARE_OF_INSTANCES * len(group)
        if len(group) >= MIN_GROUP and sum(_stores(*_arrangement(W_reference[k]), dense) for k in group) >= needed > good:
            what = "features 0 and 1 at right angles (like PCA)" if dense else "all 5 on a pentagon (72° apart)"
            shown = "; ".join(f"instance {k}: features {kept}" for k, (kept, _) in zip(group, arrangements))
            return (
                f"after training, only {good} of the {len(group)} {'dense' if dense else 'sparse'} instances (feature "
                f"probability {probability[group[0]]:.2g}) store {what}, with ||W_i|| > 0.5 marking a stored feature ({shown})"
            )
    return None


def _compare_training(expected: dict, got: object) -> str | None:
    """The loop by what it did (steps, batches, losses, learning rates) and by what it gave (the loss falls to
    about the reference's; dense and sparse toy models take their shapes)."""
    n_inst, steps = len(expected["loss_after"]), expected["steps"]
    returned = got["returned"]
    if not isinstance(returned, Tensor):
        return f"expected a tensor of shape ({n_inst},), one loss per instance, got {describe(returned)}"
    if tuple(returned.shape) != (n_inst,):
        return f"expected a tensor of shape ({n_inst},), one loss per instance, got shape {tuple(returned.shape)}"
    if not torch.isfinite(returned).all():
        return "some of the returned losses are NaN or infinite"
    lrs = got["lrs"]
    if len(lrs) == 0:
        return "no torch.optim optimizer took a step: make a torch.optim.AdamW over model.parameters() and call its step()"
    if len(lrs) != steps:
        return f"the optimizer took {len(lrs)} steps; expected {steps}, one per step"
    if not all(got["trains"]):
        return "the optimizer does not train all of the model's parameters (W and b): give it model.parameters()"
    if got["batches"] != steps:
        n = got["batches"]
        return f"batch_fn was called {n} time{'s' * (n != 1)} in {steps} steps: every step needs a fresh batch"
    if got["distinct_batches"] < steps / 2:
        return (
            f"the {steps} batches held only {got['distinct_batches']} different ones: make the generator once, before "
            "the loop, so that every step draws new inputs"
        )
    if got["wrong_probability"]:
        return (
            f"in {got['wrong_probability']} of its calls, batch_fn got a probability other than feature_probability: pass "
            "feature_probability on unchanged (it is p, the chance that each feature is present)"
        )
    if got["losses"] < steps:
        n = got["losses"]
        return f"loss_fn was called {n} time{'s' * (n != 1)} in {steps} steps: every step's loss comes from loss_fn"
    if got["wrong_importance"]:
        return (
            f"in {got['wrong_importance']} of its calls, loss_fn got importances other than `importance`: pass importance on "
            "unchanged, it weights each feature's error"
        )
    wrong = (lrs - expected["lrs"]).abs() > 1.5 * expected["lr"] / steps + 1e-12
    if wrong.any():
        t = int(wrong.nonzero()[0])
        rule = "lr * (1 - step / steps)" if expected["decay"] else "a constant lr"
        return f"at step {t} of {steps} the learning rate was {lrs[t]:.3g}; expected {expected['lrs'][t]:.3g} ({rule})"
    before, after = got["loss_before"], got["loss_after"]
    if (after == before).any():
        k = int((after == before).nonzero()[0])
        return (
            f"instance {k}: the loss on fresh data stayed at {before[k]:.4f}, so its parameters never moved: every "
            "instance's loss must reach backward()"
        )
    if (after > before).any():
        k = int((after > before).nonzero()[0])
        return f"instance {k}: the loss on fresh data went from {before[k]:.4f} to {after[k]:.4f}; training should lower it"
    for p in expected["probability"].unique().tolist():
        group = expected["probability"] == p
        want, have = expected["loss_after"][group].mean().item(), after[group].mean().item()
        if have > (1 + LOSS_TOLERANCE) * want + 1e-4:
            return (
                f"the instances with feature probability {p:.2g} end with a mean loss on fresh data of {have:.4f}; the "
                f"reference's loop reaches {want:.4f} (tolerance +{LOSS_TOLERANCE:.0%})"
            )
        mean_returned = returned[group].mean().item()
        if abs(mean_returned - have) > RETURNED_TOLERANCE * have + 1e-4:
            return (
                f"the returned losses of the instances with feature probability {p:.2g} average {mean_returned:.4f}, but "
                f"their loss on fresh data is {have:.4f}: return each instance's loss over the last steps"
            )
    if got["W"].shape[1:] == (2, 5):
        return _geometry_problem(got["W"], expected["W"], expected["probability"])
    return None


def _training_case(seed: int, n_dense: int, n_sparse: int, steps: int, batch_size: int, decay: bool) -> tuple:
    """5 features in 2 dims at lr 0.02: dense instances (importance 0.7^i) and sparse ones (p = 0.02, importance 0.9^i)."""
    p, lr = 0.02, 0.02
    n_inst = n_dense + n_sparse
    W_init = torch.randn(n_inst, 2, 5, generator=torch.Generator().manual_seed(seed)) * math.sqrt(2 / 7)
    probability = torch.tensor([1.0] * n_dense + [p] * n_sparse)[:, None].expand(n_inst, 5).clone()
    importance = torch.cat([(0.7 ** torch.arange(5.0)).expand(n_dense, 5), (0.9 ** torch.arange(5.0)).expand(n_sparse, 5)])
    return W_init, probability, importance, steps, batch_size, lr, seed, decay


def _phase_cases() -> list[Case]:
    cells = torch.tensor([[1.0, 0.0], [0.1, 1.0], [0.8, -0.9], [0.6, 0.6], [0.3, 0.7], [0.6, -0.65], [0.45, 0.2], [0.0, 0.0],
                          [0.9, 0.6]])
    pentagon_and_more = torch.cat([_polygon(5)[0], torch.zeros(1, 5)])  # 5 features on a pentagon in the x-y plane
    pentagon_and_more = torch.cat([pentagon_and_more, torch.tensor([[0.0, 0.08], [0.0, 0.06], [1.2, 0.05]])], dim=1)
    return [
        Case((cells[:, None, :],), "2 features in 1 dimension: 9 instances, from 'dedicated' to 'antipodal'"),
        Case((pentagon_and_more[None],), "a pentagon, a feature along z and a short one, in 3 dims"),
        Case((_randn(5, 3, 5, 12, scale=0.45), 0.4), "random W: 3 instances, 12 features in 5 dims, threshold 0.4"),
        Case((_randn(6, 2, 4, 9, scale=0.5), 0.6), "random W: 2 instances, 9 features in 4 dims, threshold 0.6", hidden=True),
    ]


EXERCISES = [
    Exercise(
        function="toy_forward",
        points=1,
        cases=lambda: [
            Case(_forward_case(0, batch=4, inst=3, d_hidden=2, feats=5), "3 instances, 5 features in 2 dims, batch 4"),
            Case(_forward_case(10, batch=7, inst=2, d_hidden=4, feats=6), "2 instances, 6 features in 4 dims, batch 7"),
            Case(_forward_case(20, batch=3, inst=2, d_hidden=5, feats=5), "square W (5 features in 5 dims)", hidden=True),
        ],
        reference=ref.toy_forward,
        atol=1e-5,
        hints=(
            "Think of one instance at a time: first the hidden vector h, then the output read back from h with the same "
            "W; the inst dimension just rides along in every tensor.",
            "With `einops.einsum`, name the dimensions: the first product contracts W with x over the features, the "
            "second contracts W with h over d_hidden (that is the transpose, without writing `.T`).",
            "Order matters at the end: the bias is added before the ReLU, so the ReLU is the last operation.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="generate_batch",
        points=2,
        cases=lambda: [Case((20_000, BATCH_PROBABILITIES.clone()), "20,000 samples, 3 instances × 4 features, p from 0.02 to 1")],
        reference=ref.generate_batch,
        compare=_compare_batches,
        hints=(
            "Every entry needs two independent random draws: one decides whether the feature is present, the other "
            "gives its value.",
            "A uniform draw is below p with probability p, and comparing a (n_batch, inst, feats) draw with "
            "feature_probability broadcasts over the batch.",
            "Keep the value where the feature is present and 0 elsewhere (`torch.where`); pass `generator=generator` "
            "to every `torch.rand`.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
    Exercise(
        function="importance_weighted_loss",
        points=1,
        cases=lambda: [
            Case(_loss_case(0, batch=8, inst=3, feats=5), "batch 8, 3 instances, 5 features"),
            Case(_loss_case(1, batch=5, inst=2, feats=7), "batch 5, 2 instances, 7 features"),
        ],
        reference=ref.importance_weighted_loss,
        atol=1e-5,
        hints=(
            "The loss is an expectation over inputs of a sum over features: the batch is averaged, the features are "
            "summed, and the instances stay separate.",
            "importance has shape (inst, feats), so it broadcasts against the (batch, inst, feats) errors without any "
            "reshaping; your result should have shape (inst,).",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
    Exercise(
        function="toy_parameters",
        points=1,
        cases=lambda: [
            Case((4, 40, 20, 0), "4 instances, 40 features in 20 dims"),
            Case((16, 5, 2, 1), "16 instances, 5 features in 2 dims"),
            Case((3, 100, 20, 2), "3 instances, 100 features in 20 dims", hidden=True),
        ],
        reference=ref.toy_parameters,
        probe="utils.chapter01:parameters_probe",
        compare=_compare_parameters,
        hints=(
            "Two tensors, each wrapped in `nn.Parameter` so that an optimizer given `model.parameters()` trains it; the "
            "leading dimension is the instance, so every instance gets its own W and b.",
            "Draw W with `torch.randn(shape, generator=generator)` and scale it by sqrt(2 / (n_features + d_hidden)); "
            "`nn.init.xavier_normal_` on the 3-D tensor would count its fans over the instances too.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
    Exercise(
        function="optimize",
        points=3,
        cases=lambda: [
            Case(_training_case(0, 4, 4, 500, 1024, False), "5 features in 2 dims: 4 dense, 4 sparse (p = 0.02), 500 steps"),
            Case(_training_case(1, 2, 2, 200, 512, True), "the same with decay=True: 2 dense, 2 sparse, 200 steps"),
            Case(_training_case(2, 4, 4, 500, 1024, False), "5 features in 2 dims, other initial weights", hidden=True),
        ],
        reference=ref.optimize,
        probe="utils.chapter01:optimize_probe",
        compare=_compare_training,
        hints=(
            "One loop of `steps` iterations around four moves: draw a batch, compute the per-instance losses, "
            "backpropagate, step the optimizer; make the generator and the optimizer once, before the loop.",
            "`loss_fn` gives one loss per instance; `.sum().backward()` trains each instance on its own loss (they share "
            "no parameters). Clear the old gradients every step with `optimizer.zero_grad()`, or they add up.",
            "With decay, set `group['lr']` of every `optimizer.param_groups` entry before the step; keep the last 100 "
            "losses (detached) and return their mean over the steps, one number per instance.",
        ),
        difficulty=3,
        importance=5,
        minutes=20,
    ),
    Exercise(
        function="feature_interference",
        points=1,
        cases=_geometry_cases,
        reference=ref.feature_interference,
        atol=1e-5,
        hints=(
            "Compute every pairwise overlap at once, as a feats × feats matrix per instance, then reduce each row to "
            "one number per feature.",
            "Only one side of each dot product is normalised: divide W's columns by their norms over d_hidden (dim=1) "
            "for the feature i of the row, and keep W itself for the other feature j.",
            "After squaring, the diagonal holds each feature's overlap with itself; that is not interference, so take "
            "it out of the row sums.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="feature_dimensionality",
        points=2,
        cases=_geometry_cases,
        reference=ref.feature_dimensionality,
        atol=1e-5,
        hints=(
            "This is the interference computation again with two changes: the feature's own term stays in the sum, "
            "and the result is a ratio.",
            "The numerator is how long W_i is, squared: a norm over d_hidden (dim=1), not over the features.",
            "Test it on cases you know: a feature alone in its dimension gives 1, each of an antipodal pair 1/2, each "
            "corner of a pentagon 2/5.",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="generate_correlated_batch",
        points=2,
        cases=lambda: [
            Case((20_000, CORRELATED_PROBABILITIES.clone()), "20,000 samples, 2 instances × 3 pairs, p from 0.05 to 0.9")
        ],
        reference=ref.generate_correlated_batch,
        compare=_compare_correlated,
        hints=(
            "Presence is shared by a pair, values are not: draw one presence per pair and two values per pair.",
            "Give the presence shape (n_batch, inst, pairs) and the values (n_batch, inst, pairs, 2); a trailing axis "
            "on the presence (`[..., None]`) lets it broadcast over the two values.",
            "Flatten the last two axes so that pair k lands on features 2k and 2k+1: the pair axis must come first "
            "inside the group, `(pairs two)`.",
        ),
        difficulty=2,
        importance=2,
        minutes=10,
    ),
    Exercise(
        function="generate_anticorrelated_batch",
        points=2,
        cases=lambda: [
            Case((20_000, ANTICORRELATED_PROBABILITIES.clone()), "20,000 samples, 2 instances × 3 pairs, p from 0.05 to 0.5")
        ],
        reference=ref.generate_anticorrelated_batch,
        compare=_compare_anticorrelated,
        hints=(
            "Split the randomness in two steps: is the pair active at all, and if it is, which of its two features is "
            "present?",
            "For each feature to be present with probability p, the pair must be active with probability 2p; one "
            "coin flip with chance ½ per pair then picks the feature.",
            "Build the two presences from that single coin flip (it and its negation, each combined with 'active'), "
            "stack them on a last axis of size 2 and lay the pairs out as in `generate_correlated_batch`.",
        ),
        difficulty=3,
        importance=2,
        minutes=15,
    ),
    Exercise(
        function="neuron_forward",
        points=1,
        cases=lambda: [
            Case(_forward_case(30, batch=4, inst=3, d_hidden=2, feats=5), "3 instances, 5 features in 2 neurons, batch 4"),
            Case(_forward_case(40, batch=6, inst=2, d_hidden=4, feats=7), "2 instances, 7 features in 4 neurons, batch 6"),
        ],
        reference=ref.neuron_forward,
        atol=1e-5,
        hints=(
            "This is `toy_forward` with one change: the hidden layer is now made of neurons.",
            "A neuron is a coordinate with an activation function: the ReLU goes on h too, and the bias stays inside "
            "the output ReLU.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
    Exercise(
        function="feature_phase",
        points=1,
        cases=_phase_cases,
        reference=ref.feature_phase,
        atol=0,
        rtol=0,
        hints=(
            "Two tests, in order: is the feature represented at all (its own norm), and if it is, how far do the other "
            "features reach into its direction?",
            "The reach is the interference of `feature_interference`, square-rooted: sqrt of the sum over j != i of "
            "(Ŵ_i · W_j)², so compare it with the threshold itself, not with its square.",
            "Nest two `torch.where`s: 0 where the norm is at most the threshold; else 2 where the reach is above it, "
            "else 1. The result must be integers (`torch.long`).",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
]

check = Checks(EXERCISES)
