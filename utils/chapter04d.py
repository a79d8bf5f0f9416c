"""Chapter 04d — Gradient routing (Cloud et al. 2024, arXiv 2410.04332), on scikit-learn's 8×8 digits.

The paper's first experiment, small enough for a CPU: an MLP autoencoder whose encoding is split in
two halves. Gradients from digits 0–4 may only reach the first half of the encoding and gradients
from 5–9 only the second half (the forward pass is unchanged). A *certificate* decoder, trained
afterwards on one frozen half, then reconstructs its own digits well and the others badly.

This module holds the data, the autoencoder and its training loops (which call the learner's
functions through ``*_fn`` arguments), the plots and the checks; the reference implementations are
in `utils/references/chapter04d.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from utils.device import one_thread
from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise
from utils.references import chapter04d as ref
from utils.references.chapter04d import group_losses, keep_half, route_gradients, routing_mask

LATENT_DIM = 16  # the encoding: dims 0..7 for digits 0–4, dims 8..15 for digits 5–9
HIDDEN = 64  # width of the encoder's and decoder's hidden layer
FIRST_GROUP = range(0, 5)  # digits routed to the first half of the encoding

# ---------------------------------------------------------------------------------------------
# Data: scikit-learn's bundled 8×8 digits (1,797 images, offline), scaled to [0, 1]


@dataclass(frozen=True)
class Digits:
    x_train: Float[Tensor, "n_train 64"]
    y_train: Int[Tensor, " n_train"]
    x_test: Float[Tensor, "n_test 64"]
    y_test: Int[Tensor, " n_test"]


@functools.lru_cache(maxsize=1)
def load_digits_data(test_fraction: float = 0.3, seed: int = 0) -> Digits:
    """The 1,797 digits as 64-pixel vectors in [0, 1]; a fixed stratified split (1,257 train / 540 test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    train, test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return Digits(x[train], y[train], x[test], y[test])


# ---------------------------------------------------------------------------------------------
# The autoencoder and its training loops (not graded; the demos call them with the learner's functions


def mlp(sizes: list[int], last_bias: bool = True) -> nn.Sequential:
    """Linear layers with ReLUs between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(n_in, n_out, bias=last_bias or not last))
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """64 pixels -> 64 -> ``latent_dim`` (the encoding, no bias, as in the paper) -> 64 -> 64 pixels."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden: int = HIDDEN):
        super().__init__()
        self.encoder = mlp([64, hidden, latent_dim], last_bias=False)
        self.decoder = mlp([latent_dim, hidden, 64])

    def forward(self, x: Float[Tensor, "batch 64"]) -> Float[Tensor, "batch 64"]:
        return self.decoder(self.encoder(x))


def train_autoencoder(
    data: Digits,
    routed: bool = True,
    latent_dim: int = LATENT_DIM,
    steps: int = 400,
    lr: float = 8e-3,
    l1: float = 5e-3,
    seed: int = 0,
    mask_fn: Callable = routing_mask,
    route_fn: Callable = route_gradients,
    desc: str = "autoencoder",
) -> tuple[Autoencoder, list[float]]:
    """Train on the whole training set each step (full batch, Adam). Returns the model and its loss curve.

    Loss: mean squared reconstruction error + ``l1`` × Σ_dims mean_batch |h| (the L1 penalty on the
    encoding ramps up linearly over the first third of training). With ``routed``, the decoder reads
    ``route_fn(h, mask_fn(labels, latent_dim))``: the same values, but the reconstruction error of a
    0–4 digit only reaches the first half of its encoding, that of a 5–9 digit only the second half.
    The L1 penalty is applied to the encoding itself, so it reaches every dimension.
    """
    torch.manual_seed(seed)
    model = Autoencoder(latent_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    mask = mask_fn(data.y_train, latent_dim)
    curve = []
    with one_thread(), torch.enable_grad():
        for step in tqdm(range(steps), desc=desc, mininterval=1.0):
            h = model.encoder(data.x_train)
            h_decoded = route_fn(h, mask) if routed else h
            reconstruction = ((model.decoder(h_decoded) - data.x_train) ** 2).mean()
            penalty = h.abs().mean(0).sum()
            loss = reconstruction + min(1.0, 3 * step / steps) * l1 * penalty
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            curve.append(reconstruction.item())
    return model, curve


def train_certificate(
    model: Autoencoder,
    data: Digits,
    half: int,
    keep_fn: Callable = keep_half,
    steps: int = 200,
    lr: float = 8e-3,
    seed: int = 0,
) -> nn.Sequential:
    """A fresh decoder trained (Adam, full batch, MSE on all ten digits) to reconstruct the image from
    ``keep_fn(z, half)``: the frozen encoding with the other half zeroed. The encoder is not changed."""
    with torch.no_grad():
        z = model.encoder(data.x_train)
    z_kept = keep_fn(z, half)
    torch.manual_seed(10_000 + seed)
    decoder = mlp([z.shape[-1], HIDDEN, 64])
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    with one_thread(), torch.enable_grad():
        for _ in range(steps):
            loss = ((decoder(z_kept) - data.x_train) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return decoder


@torch.no_grad()
def digit_losses(
    model: Autoencoder,
    data: Digits,
    decoder: nn.Module | None = None,
    half: int | None = None,
    keep_fn: Callable = keep_half,
    loss_fn: Callable = group_losses,
) -> Float[Tensor, " 10"]:
    """Test MSE per digit 0..9: the model's own decoder on the full encoding (default), or ``decoder``
    on ``keep_fn(z, half)`` when ``half`` is given."""
    z = model.encoder(data.x_test)
    if half is not None:
        z = keep_fn(z, half)
    x_hat = (model.decoder if decoder is None else decoder)(z)
    return loss_fn(data.x_test, x_hat, data.y_test, 10)


def certify(
    model: Autoencoder,
    data: Digits,
    keep_fn: Callable = keep_half,
    loss_fn: Callable = group_losses,
    steps: int = 200,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Per-digit test losses: ``"full"`` (own decoder), ``"first half"`` and ``"second half"``
    (a certificate decoder trained on that half alone), and ``"decoder, first half"`` /
    ``"decoder, second half"`` (the model's own decoder with the other half zeroed, no retraining).
    Also ``"certificates"``: the two certificate decoders, for pictures."""
    certificates = [train_certificate(model, data, half, keep_fn, steps=steps, seed=seed) for half in (0, 1)]
    out: dict = {"full": digit_losses(model, data, keep_fn=keep_fn, loss_fn=loss_fn)}
    for half, name in enumerate(["first half", "second half"]):
        out[name] = digit_losses(model, data, certificates[half], half, keep_fn, loss_fn)
        out[f"decoder, {name}"] = digit_losses(model, data, None, half, keep_fn, loss_fn)
    out["certificates"] = certificates
    return out


@torch.no_grad()
def mean_image_losses(data: Digits, loss_fn: Callable = group_losses) -> Float[Tensor, " 10"]:
    """Test MSE per digit of a 'decoder' that knows nothing: it always outputs the training set's mean image."""
    x_hat = data.x_train.mean(0, keepdim=True).expand_as(data.x_test)
    return loss_fn(data.x_test, x_hat, data.y_test, 10)


def split_ratios(losses: dict[str, Tensor]) -> tuple[float, float]:
    """How much worse each certificate reconstructs the *other* group than its own:
    (first-half certificate: loss on 5–9 / loss on 0–4, second-half certificate: loss on 0–4 / loss on 5–9).
    Groups are weighted equally by digit (the mean of the per-digit losses)."""
    first, second = losses["first half"], losses["second half"]
    return (first[5:].mean() / first[:5].mean()).item(), (second[:5].mean() / second[5:].mean()).item()


# ---------------------------------------------------------------------------------------------
# Plots


def _image(ax: plt.Axes, pixels: Tensor) -> None:
    ax.imshow(pixels.detach().reshape(8, 8).clamp(0, 1).numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set(xticks=[], yticks=[])


@torch.no_grad()
def plot_reconstructions(
    models: dict[str, tuple[Autoencoder, list[nn.Module]]], data: Digits, keep_fn: Callable = keep_half
) -> None:
    """One test image per digit (columns); rows: the input, then per model the certificate decoders'
    reconstructions from the first half and from the second half of the encoding."""
    index = [int((data.y_test == d).nonzero()[0]) for d in range(10)]
    x = data.x_test[index]
    rows = [("input", x)]
    for name, (model, certificates) in models.items():
        z = model.encoder(x)
        for half, label in enumerate(["first half (0–4)", "second half (5–9)"]):
            rows.append((f"{name}:\n{label} only", certificates[half](keep_fn(z, half))))
    fig, axes = plt.subplots(len(rows), 10, figsize=(8, 1.0 * len(rows)))
    for r, (label, images) in enumerate(rows):
        for c in range(10):
            _image(axes[r, c], images[c])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    for c in range(10):
        axes[0, c].set_title(str(c))
    fig.suptitle("test digits reconstructed by certificate decoders that see only one half of the encoding", y=1.0)
    plt.tight_layout()


def plot_digit_losses(results: dict[str, dict[str, Tensor]]) -> None:
    """Per model (one panel each), test MSE per digit of the certificate decoders on each half."""
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.2), sharey=True)
    digits = torch.arange(10)
    for ax, (name, losses) in zip(axes, results.items(), strict=True):
        ax.bar(digits - 0.2, losses["first half"], width=0.4, color="tab:red", label="first half only (routed: 0–4)")
        ax.bar(digits + 0.2, losses["second half"], width=0.4, color="tab:blue", label="second half only (routed: 5–9)")
        ax.plot(digits, losses["full"], "k_", ms=14, mew=2, label="full encoding, own decoder")
        ax.axvline(4.5, color="black", ls=":")
        ax.set(title=name, xlabel="digit", xticks=range(10))
    axes[0].set_ylabel("test reconstruction MSE")
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    plt.tight_layout()


def value_and_gradient(route_fn: Callable, h: Tensor, mask: Tensor, upstream: Tensor) -> tuple[Tensor, Tensor]:
    """The probe of `route_gradients`' check: its value on (h, mask), and the gradient that ``upstream`` sends back to h."""
    with torch.enable_grad():
        h = h.detach().clone().requires_grad_(True)
        routed = route_fn(h, mask)
        if isinstance(routed, Tensor) and routed.requires_grad:
            (routed * upstream).sum().backward()
    grad = h.grad if h.grad is not None else torch.zeros_like(h)
    return (routed.detach() if isinstance(routed, Tensor) else routed), grad


# ---------------------------------------------------------------------------------------------
# Checks: the cases every learner's function is run on


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _labels(seed: int, n: int) -> Tensor:
    return torch.randint(0, 10, (n,), generator=_generator(seed))


def _mask_cases() -> list[Case]:
    return [
        Case((torch.arange(10), 16), "digits 0..9 once each, latent_dim 16"),
        Case((_labels(1, 25), 6), "25 random labels, latent_dim 6"),
        Case((torch.tensor([4, 5, 5, 4, 9, 0]), 2), "digits around the boundary (4 and 5), latent_dim 2", hidden=True),
    ]


def _route_case(seed: int, batch: int, latent: int) -> tuple[Tensor, Tensor]:
    h = torch.randn(batch, latent, generator=_generator(seed))
    return h, routing_mask(_labels(seed + 1, batch), latent)


def _gradient_case(seed: int, batch: int, latent: int) -> tuple[Tensor, Tensor, Tensor]:
    h, mask = _route_case(seed, batch, latent)
    return h, mask, torch.randn(batch, latent, generator=_generator(seed + 2))


def _loss_case(seed: int, batch: int, n_groups: int) -> tuple[Tensor, Tensor, Tensor, int]:
    g = _generator(seed)
    x = torch.rand(batch, 64, generator=g)
    x_hat = x + 0.2 * torch.randn(batch, 64, generator=g)
    sizes = torch.arange(1, n_groups + 1)  # unequal group sizes: group k has k + 1 (+ extra) members
    groups = torch.repeat_interleave(torch.arange(n_groups), sizes)
    groups = torch.cat([groups, torch.randint(0, n_groups, (batch - len(groups),), generator=g)])
    return x, x_hat, groups[torch.randperm(batch, generator=g)], n_groups


EXERCISES = [
    Exercise(
        function="routing_mask",
        points=2,
        cases=_mask_cases,
        reference=ref.routing_mask,
        hints=(
            "Each entry answers two questions: is this image a digit 0–4, and is this dimension in the first half? "
            "The mask is 1 exactly when the two answers agree.",
            "Build one answer per image as a [batch, 1] column from the labels, one per dimension as a [latent_dim] "
            "row from torch.arange(latent_dim); broadcasting combines them into [batch, latent_dim].",
            "Compare, then convert: the check wants float zeros and ones (it multiplies the encoding), not booleans.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
    Exercise(
        function="route_gradients",
        points=1,
        cases=lambda: [
            Case(_gradient_case(0, 6, 8), "batch 6, latent 8"),
            Case(_gradient_case(10, 9, 4), "batch 9, latent 4"),
        ],
        reference=ref.route_gradients,
        probe="utils.chapter04d:value_and_gradient",
        atol=1e-6,
        hints=(
            "Autograd differentiates the expression you write, not the numbers it produces: two expressions with "
            "the same value can send back different gradients, and a term autograd treats as a constant sends none.",
            "Build the output from two pieces that add up to h: one that autograd follows back to h, used where the "
            "mask is 1, and one it treats as a constant, used where the mask is 0.",
            "h.detach() is that constant piece: h's values, cut out of the backward pass. Let the mask choose, entry "
            "by entry, which piece contributes; then check the statement's example by hand.",
        ),
        difficulty=3,
        importance=5,
        minutes=10,
    ),
    Exercise(
        function="routed_gradient",
        points=2,
        cases=lambda: [
            Case(_gradient_case(20, 6, 8), "batch 6, latent 8"),
            Case(_gradient_case(30, 11, 4), "batch 11, latent 4"),
        ],
        reference=ref.routed_gradient,
        atol=1e-6,
        hints=(
            "Autograd fills .grad only on leaf tensors that require grad, and records nothing while gradients are "
            "switched off: run your route_gradients on a fresh leaf with h's values, with recording on.",
            "backward() starts from a scalar. Choose one whose gradient with respect to the routed tensor is exactly "
            "upstream: the sum of the routed tensor times upstream (upstream being a constant).",
            "h.detach().clone().requires_grad_(True) makes the leaf without touching h; torch.enable_grad() switches "
            "recording back on inside torch.no_grad(); after backward() the answer is the leaf's .grad.",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="group_losses",
        points=2,
        cases=lambda: [
            Case(_loss_case(40, 30, 2), "30 images in 2 groups of unequal size"),
            Case(_loss_case(50, 80, 10), "80 images in 10 groups of unequal size"),
        ],
        reference=ref.group_losses,
        atol=1e-6,
        hints=(
            "Two averages, one after the other: first each image's error over its pixels, then those per-image errors "
            "within each group.",
            "Groups have different sizes: divide each group's sum of per-image errors by that group's own count "
            "(in the statement's example, group 0 is divided by 2 and group 1 by 1).",
            "torch.nn.functional.one_hot(groups, n_groups) is a [batch, n_groups] matrix: multiplied with the "
            "per-image errors it gives per-group sums, and summed over the batch the counts.",
        ),
        difficulty=2,
        importance=2,
        minutes=10,
    ),
    Exercise(
        function="keep_half",
        points=1,
        cases=lambda: [
            Case((torch.randn(5, 8, generator=_generator(60)), 0), "keep the first half of 8 dims"),
            Case((torch.randn(5, 8, generator=_generator(61)), 1), "keep the second half of 8 dims"),
            Case((torch.randn(3, 16, generator=_generator(62)), 1), "keep the second half of 16 dims", hidden=True),
        ],
        reference=ref.keep_half,
        atol=0,
        rtol=0,
        hints=(
            "Keep the shape: the other half is zeroed, not sliced away (every certificate decoder reads all d inputs).",
            "A 0/1 vector over the last dimension selects a half; torch.arange(d) < d // 2 is the first half.",
            "Multiply by it (in z's dtype): the result is a new tensor, and z itself stays as it was.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
]

check = Checks(EXERCISES)
