"""Chapter 02 — sparse autoencoders, from toy models to a real language model: data, plots and checks.

Bricken et al. 2023 (Towards Monosemanticity), Cunningham et al. 2023, Templeton et al. 2024,
Gao et al. 2024 (TopK), Rajamanoharan et al. 2024 (Gated, JumpReLU). The reference implementations
are in `utils/references/chapter02.py`; the SAE library built from them (architectures, `train_sae`,
metrics, SAELens I/O, the cached language-model SAE) in `utils/sae/`. The learner writes each function
in the notebook; `check.<name>(fn)` compares it with the reference on the fixed cases below.
"""

from __future__ import annotations

import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise, match
from utils.models import load_model
from utils.references import chapter02 as ref
from utils.references.chapter01 import generate_batch

# ---------------------------------------------------------------------------------------------
# Toy data with known features (a chapter-01 toy model in superposition)


def toy_hidden_batch(
    W: Float[Tensor, "d_hidden feats"], n_batch: int, feature_probability: float, generator: torch.Generator | None = None
) -> Float[Tensor, "batch d_hidden"]:
    """Hidden activations h = W x of a chapter-01 toy model, for sparse x as in chapter 01."""
    x = generate_batch(n_batch, torch.full((1, W.shape[1]), feature_probability), generator)[:, 0]
    return x @ W.T


# ---------------------------------------------------------------------------------------------
# Plots


def plot_density_histogram(frequencies: dict[str, Tensor], title: str = "feature density") -> None:
    """Histogram of log10(firing frequency) per latent, dead latents shown at the left edge."""
    _, ax = plt.subplots(figsize=(7, 3))
    for name, frequency in frequencies.items():
        dead = int((frequency == 0).sum())
        logs = frequency.clamp_min(1e-7).log10()
        ax.hist(logs.numpy(), bins=50, range=(-7, 0), alpha=0.6, label=f"{name} ({dead} dead at −7)")
    ax.set(xlabel="log10(firing frequency)", ylabel="latents", title=title)
    ax.legend(fontsize=8)


def plot_training(histories: dict[str, dict[str, list[float]]]) -> None:
    """Loss, L0 and explained variance during training, one line per run."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for name, hist in histories.items():
        for ax, key in zip(axes, ["loss", "l0", "variance_explained"]):
            ax.plot(hist["step"], hist[key], label=name)
    for ax, key in zip(axes, ["loss", "L0", "variance explained"]):
        ax.set(xlabel="step", title=key)
    axes[0].set_yscale("log")
    axes[-1].legend(fontsize=8)
    plt.tight_layout()


# ---------------------------------------------------------------------------------------------
# Checks: the cases every learner's function is run on


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sae_case(seed: int, batch: int, d_in: int, d_sae: int, unit: bool = False) -> tuple[Tensor, ...]:
    g = _g(seed)
    x = torch.randn(batch, d_in, generator=g)
    W_enc = torch.randn(d_in, d_sae, generator=g) / math.sqrt(d_in)
    b_enc = torch.randn(d_sae, generator=g) * 0.3
    W_dec = torch.randn(d_sae, d_in, generator=g) * torch.rand(d_sae, 1, generator=g).add(0.5)
    if unit:
        W_dec = F.normalize(W_dec, dim=-1)
    b_dec = torch.randn(d_in, generator=g)
    return x, W_enc, b_enc, W_dec, b_dec


def _loss_case(seed: int, batch: int, d_in: int, d_sae: int, l1: float) -> tuple:
    x, W_enc, b_enc, W_dec, b_dec = _sae_case(seed, batch, d_in, d_sae)
    acts, x_hat = ref.sae_forward(x, W_enc, b_enc, W_dec, b_dec)
    return x, acts, x_hat, W_dec, l1


def _recovery_case(seed: int, n: int, d_in: int, d_sae: int) -> tuple[Tensor, Tensor]:
    g = _g(seed)
    true = torch.randn(n, d_in, generator=g) * torch.rand(n, 1, generator=g).add(0.5)
    W_dec = torch.randn(d_sae, d_in, generator=g) * 2
    W_dec[:n] = -true * 3 + 0.1 * torch.randn(n, d_in, generator=g)  # an anti-aligned copy: cos ≈ −1, not a match
    W_dec[n : 2 * n] = true * 0.5 + 0.3 * torch.randn(n, d_in, generator=g)  # imperfect, scaled copies
    return true, W_dec[torch.randperm(d_sae, generator=g)]


def _acts_case(seed: int, batch: int, d_sae: int) -> tuple[Tensor, ...]:
    g = _g(seed)
    p = torch.linspace(0, 0.6, d_sae)[torch.randperm(d_sae, generator=g)]
    p[:3] = torch.tensor([0.0, 0.0, 0.3])  # two dead latents, one dense
    fires = torch.rand(batch, d_sae, generator=g) < p
    return (torch.where(fires, torch.rand(batch, d_sae, generator=g) * 3 + 0.1, 0.0),)


def _compare_firing_stats(expected: dict, got: object) -> str | None:
    return match(expected, got, atol=1e-5, rtol=1e-5)


def _resample_case(seed: int, dead_latents: list[int], batch: int = 64) -> tuple:
    """An SAE that reconstructs inputs in span(e0..e3) exactly; 3 inputs leave a residual in e4/e5."""
    g = _g(seed)
    d_in, d_sae = 6, 8
    W_dec = torch.zeros(d_sae, d_in)
    W_dec[:4, :4] = torch.eye(4)
    W_dec[4:] = F.normalize(torch.randn(4, d_in, generator=g), dim=-1)
    W_enc = W_dec.T.clone() * 1.5
    W_enc[:, :4] = torch.eye(d_in)[:, :4]
    b_enc = torch.zeros(d_sae)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[dead_latents] = True
    b_enc[dead] = -100.0  # dead: never fire
    x = torch.rand(batch, d_in, generator=g) * (torch.arange(d_in) < 4)
    bad = torch.randperm(batch, generator=g)[:3]
    x[bad, 4:] = torch.randn(3, 2, generator=g) * torch.tensor([[3.0], [1.0], [0.2]])
    return x, W_enc, b_enc, W_dec, torch.zeros(d_in), dead, seed


def _compare_resample(expected: dict, got: object) -> str | None:
    """Behaviour, not random draws: alive latents untouched, each dead latent's decoder row the unit
    direction of a badly reconstructed input's residual, its encoder along it (0.2 × mean alive encoder
    norm), zero encoder bias, and it fires on that input."""
    x, W_enc0, b_enc0, W_dec0, b_dec0, dead, _ = expected["inputs"]
    expected = expected["output"]
    keys = {"W_enc", "b_enc", "W_dec", "b_dec"}
    if not isinstance(got, dict) or set(got) != keys:
        return f"expected a dict with keys {sorted(keys)}, got {sorted(got) if isinstance(got, dict) else type(got).__name__}"
    for name in keys:
        if not isinstance(got[name], Tensor) or got[name].shape != expected[name].shape:
            return f"{name}: expected a tensor of shape {tuple(expected[name].shape)}"
    if all(got[name].dtype == expected[name].dtype and torch.allclose(got[name], expected[name], atol=1e-6) for name in keys):
        return None  # exactly the expected tensors: what lets a known mistake's output be recognised and named
    alive = ~dead
    for name, before, cols in [("W_dec", W_dec0, False), ("W_enc", W_enc0, True), ("b_enc", b_enc0, False)]:
        now = got[name][:, alive] if cols else got[name][alive]
        was = before[:, alive] if cols else before[alive]
        if not torch.allclose(now, was, atol=1e-6):
            return f"{name} changed for latents that are alive; only dead latents are resampled"
    _, x_hat = ref.sae_forward(x, W_enc0, b_enc0, W_dec0, b_dec0)
    residual = x - x_hat
    bad = residual.norm(dim=-1) > 1e-4
    directions = F.normalize(residual[bad], dim=-1)
    enc_norm = W_enc0[:, alive].norm(dim=0).mean()
    for latent in dead.nonzero().flatten().tolist():
        row = got["W_dec"][latent]
        if abs(row.norm().item() - 1) > 1e-4:
            return f"dead latent {latent}: its decoder row has norm {row.norm():.3g}; it should be a unit vector"
        cos = directions @ row
        if cos.max() < 1 - 1e-4:
            return (
                f"dead latent {latent}: its decoder row is not the direction of any badly reconstructed input's residual "
                "x − x̂ (sample inputs with probability ∝ loss², and use the normalised residual)"
            )
        direction = directions[cos.argmax()]
        enc = got["W_enc"][:, latent]
        if not torch.allclose(enc, direction * 0.2 * enc_norm, atol=1e-4):
            return (
                f"dead latent {latent}: its encoder column should be that direction times 0.2 × the mean alive encoder "
                f"column norm ({0.2 * enc_norm:.3g})"
            )
        if abs(got["b_enc"][latent].item()) > 1e-6:
            return f"dead latent {latent}: its encoder bias should be reset to 0, got {got['b_enc'][latent]:.3g}"
    acts, _ = ref.sae_forward(x, got["W_enc"], got["b_enc"], got["W_dec"], got["b_dec"])
    if not (acts[:, dead] > 0).any(0).all():
        return "after resampling some dead latents still fire on no input"
    if not torch.equal(got["b_dec"], b_dec0):
        return "b_dec changed; resampling leaves it alone"
    return None


def _with_inputs(fn):
    """What the resampling check compares: the output beside the case's inputs, which `_compare_resample` needs."""

    def output_and_inputs(*inputs):
        return {"output": fn(*inputs), "inputs": inputs}

    return output_and_inputs


def _topk_case(seed: int, batch: int, d_sae: int, k: int) -> tuple[Tensor, int]:
    pre = torch.randn(batch, d_sae, generator=_g(seed))
    pre[0] = -pre[0].abs() - 0.1  # one row entirely negative: the ReLU keeps none of its top k
    return pre, k


def _auxk_case(seed: int, batch: int, d_in: int, d_sae: int, n_dead: int, k_aux: int) -> tuple:
    g = _g(seed)
    residual = torch.randn(batch, d_in, generator=g)
    pre = torch.randn(batch, d_sae, generator=g) + 1  # mostly positive: more dead latents fire than k_aux allows
    pre[:, :4] += 3  # alive latents with large pre-activations must not be used
    W_dec = torch.randn(d_sae, d_in, generator=g)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[torch.randperm(d_sae - 4, generator=g)[:n_dead] + 4] = True
    return residual, pre, W_dec, dead, k_aux


def _jumprelu_case(seed: int, batch: int, d_sae: int, bandwidth: float) -> tuple:
    g = _g(seed)
    threshold = torch.rand(d_sae, generator=g) * 0.5 + 0.1
    # inputs on both sides of the threshold, many within the bandwidth window
    x = threshold + (torch.rand(batch, d_sae, generator=g) - 0.5) * 4 * bandwidth
    x[: batch // 2] = torch.randn(batch // 2, d_sae, generator=g)
    return x, threshold, bandwidth, torch.randn(batch, d_sae, generator=g)


def _gated_case(seed: int, batch: int, d_in: int, d_sae: int) -> tuple:
    g = _g(seed)
    x, W_enc, b_gate, W_dec, b_dec = _sae_case(seed, batch, d_in, d_sae)
    return x, W_enc, b_gate, torch.randn(d_sae, generator=g) * 0.5, torch.randn(d_sae, generator=g) * 0.3, W_dec, b_dec


def _ce_case(seed: int, n_seq: int, seq_len: int, d_sae: int) -> tuple:
    model = load_model(verbose=False)
    g = _g(seed)
    tokens = torch.randint(100, 5000, (n_seq, seq_len), generator=g)
    tokens[:, 0] = model.tokenizer.bos_token_id
    d = model.cfg.d_model
    W_dec = F.normalize(torch.randn(d_sae, d, generator=g), dim=-1)
    W_enc = W_dec.T * 0.05
    b_enc = torch.zeros(d_sae)
    b_dec = torch.randn(d, generator=g)
    return model, tokens, "blocks.6.hook_resid_pre", W_enc, b_enc, W_dec, b_dec


def _logit_case(seed: int, k: int) -> tuple:
    W_U = load_model(verbose=False).W_U
    return torch.randn(W_U.shape[0], generator=_g(seed)), W_U, k


EXERCISES = [
    Exercise(
        function="sae_forward",
        points=1,
        cases=lambda: [
            Case(_sae_case(0, 5, 4, 8), "batch 5, d_in 4, d_sae 8"),
            Case(_sae_case(1, 7, 6, 3), "batch 7, d_in 6, d_sae 3 (fewer latents than dimensions)"),
            Case(_sae_case(2, 3, 5, 12), "batch 3, d_in 5, d_sae 12", hidden=True),
        ],
        reference=ref.sae_forward,
        atol=1e-5,
        hints=(
            "Two steps, encoder then decoder: the encoder reads x with the decoder bias taken away, and a ReLU keeps "
            "only the positive latents.",
            "Let the shapes guide the products: [batch, d_in] @ W_enc [d_in, d_sae] gives the latents, [batch, d_sae] "
            "@ W_dec [d_sae, d_in] the reconstruction; each bias is added after its product.",
            "The SAE encodes activations centred at b_dec but must reconstruct the originals: b_dec comes back at the "
            "end.",
        ),
        difficulty=1,
        importance=5,
        minutes=5,
    ),
    Exercise(
        function="sae_loss",
        points=1,
        cases=lambda: [
            Case(_loss_case(3, 6, 4, 8, 0.3), "batch 6, d_in 4, d_sae 8, λ = 0.3 (decoder rows of varied norms)"),
            Case(_loss_case(4, 9, 5, 10, 2.0), "batch 9, d_in 5, d_sae 10, λ = 2"),
        ],
        reference=ref.sae_loss,
        atol=1e-5,
        hints=(
            "Both terms are a mean over the batch of a per-token sum: the squared error summed over the d_in "
            "dimensions, the activations summed over the d_sae latents.",
            "In the sparsity term each latent's activation is weighted by the length of its decoder row: "
            "`W_dec.norm(dim=-1)` gives one norm per latent, shape [d_sae], which broadcasts against acts.",
            "Return a dict with the keys \"loss\", \"mse\" and \"sparsity\", each a scalar tensor (no `.item()`: the loss "
            "must stay differentiable).",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="constrain_decoder",
        points=1,
        cases=lambda: [
            Case((torch.randn(6, 4, generator=_g(5)) * 3, torch.randn(6, 4, generator=_g(6))), "6 latents, d_in 4"),
            Case((torch.randn(10, 7, generator=_g(7)) * 0.2, torch.randn(10, 7, generator=_g(8))), "10 latents, d_in 7"),
        ],
        reference=ref.constrain_decoder,
        atol=1e-5,
        hints=(
            "Each latent owns one row of W_dec ([d_sae, d_in]): both operations work row by row, along the last "
            "dimension.",
            "Make the unit rows first; the part of a gradient row that only changes the row's length is its component "
            "along that unit row (a dot product times the unit row).",
            "Keep the per-row dot products as a [d_sae, 1] column (`sum(-1, keepdim=True)`) so that they broadcast "
            "back over d_in.",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="feature_recovery",
        points=1,
        cases=lambda: [
            Case(_recovery_case(9, 5, 4, 16), "5 true features, 16 decoder rows (one anti-aligned copy of each)"),
            Case(_recovery_case(10, 8, 6, 20), "8 true features, 20 decoder rows"),
        ],
        reference=ref.feature_recovery,
        atol=1e-5,
        hints=(
            "A match is about direction, not length: compare true features and decoder rows by cosine similarity.",
            "Normalise the rows of both (`F.normalize(..., dim=-1)`); one matrix product then gives all [n_features, "
            "d_sae] cosines.",
            "For each true feature keep its best decoder row, a max over the decoder axis, with the sign kept: an "
            "anti-aligned row has cosine −1 and is no match.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
    Exercise(
        function="variance_explained",
        points=1,
        cases=lambda: [
            Case((torch.randn(50, 6, generator=_g(11)) + 4, torch.randn(50, 6, generator=_g(12)) * 0.5 + 4), "mean 4"),
            Case(
                (torch.randn(30, 3, generator=_g(13)) * torch.tensor([5.0, 1, 0.1]), torch.zeros(30, 3)),
                "x̂ = 0, scales 5, 1, 0.1",
            ),
        ],
        reference=ref.variance_explained,
        atol=1e-5,
        hints=(
            "Compare the SAE's squared error with that of the laziest predictor, the batch mean: their ratio is the "
            "fraction of the variance left unexplained.",
            "Both are single sums over every token and every dimension (one ratio, not one per dimension); "
            "`x.mean(0)` is the mean, one value per dimension.",
            "Return a Python float (`.item()`) of one minus that ratio.",
        ),
        difficulty=1,
        importance=4,
        minutes=5,
    ),
    Exercise(
        function="firing_stats",
        points=1,
        cases=lambda: [
            Case(_acts_case(14, 200, 12), "200 tokens, 12 latents (2 dead)"),
            Case(_acts_case(15, 50, 7), "50 tokens, 7 latents"),
        ],
        reference=ref.firing_stats,
        compare=_compare_firing_stats,
        hints=(
            "Everything comes from one boolean tensor: which latents fire (are non-zero) on which tokens.",
            "Average it over the tokens (dim 0) for each latent's frequency; count it over the latents (dim -1) and "
            "average over the tokens for L0.",
            "dead_fraction and dense_fraction are fractions of all d_sae latents (between 0 and 1), Python floats "
            "like l0.",
        ),
        difficulty=1,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="resample_dead_latents",
        points=2,
        cases=lambda: [
            Case(_resample_case(16, [4, 6]), "d_in 6, d_sae 8, latents 4 and 6 dead, 3 of 64 inputs badly reconstructed"),
            Case(_resample_case(17, [5, 6, 7]), "latents 5, 6, 7 dead"),
        ],
        reference=ref.resample_dead_latents,
        wrap=_with_inputs,
        compare=_compare_resample,
        hints=(
            "Only the dead latents change, and each is pointed at an input the SAE reconstructs badly: start from "
            "each input's loss Σ_d (x − x̂)² under the current SAE.",
            "`torch.multinomial(weights, n, replacement=True, generator=...)` draws n indices with probability ∝ "
            "weights: here the squared losses, one draw per dead latent, with a generator seeded with `seed`.",
            "Work on clones; measure the alive encoder columns' mean norm before changing anything, then write each "
            "chosen input's unit residual into its latent's decoder row, the scaled copy into its encoder column, and "
            "reset its bias.",
        ),
        difficulty=3,
        importance=3,
        minutes=20,
    ),
    Exercise(
        function="topk_activation",
        points=1,
        cases=lambda: [
            Case(_topk_case(18, 6, 10, 3), "batch 6, d_sae 10, k = 3 (row 0 all negative)"),
            Case(_topk_case(19, 4, 32, 8), "batch 4, d_sae 32, k = 8"),
        ],
        reference=ref.topk_activation,
        atol=1e-6,
        hints=(
            "Per row: find the k largest pre-activations and where they are; every other entry becomes 0.",
            "`torch.topk(..., dim=-1)` returns values and indices; `Tensor.scatter` writes values into a tensor of "
            "zeros at given indices.",
            "A top-k value can still be negative (row 0 of the first case is all negative): the ReLU applies to the "
            "values you keep.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="auxk_loss",
        points=1,
        cases=lambda: [
            Case(_auxk_case(20, 5, 4, 12, n_dead=5, k_aux=3), "5 dead of 12 latents, k_aux = 3"),
            Case(_auxk_case(21, 6, 3, 10, n_dead=2, k_aux=4), "2 dead latents, k_aux = 4 (more than dead: use all dead)"),
        ],
        reference=ref.auxk_loss,
        atol=1e-4,
        hints=(
            "It is TopK again, restricted to the dead latents: an alive latent must never be chosen, however large "
            "its pre-activation.",
            "Make alive latents impossible to pick by filling their pre-activations with −inf (`masked_fill`) before "
            "`topk`, and take only min(k_aux, number of dead) so that no −inf is ever chosen.",
            "ReLU the chosen values, scatter them into zeros and decode with W_dec alone (no `b_dec`); score it like "
            "the mse: summed over dimensions, mean over the batch.",
        ),
        difficulty=3,
        importance=2,
        minutes=15,
    ),
    Exercise(
        function="jumprelu_backward",
        points=2,
        cases=lambda: [
            Case(_jumprelu_case(22, 40, 6, 0.05), "batch 40, 6 latents, bandwidth 0.05"),
            Case(_jumprelu_case(23, 30, 4, 0.2), "batch 30, 4 latents, bandwidth 0.2"),
        ],
        reference=ref.jumprelu_backward,
        atol=1e-5,
        hints=(
            "One gradient per input of the forward: x's passes through where the latent fired; θ's comes only from "
            "tokens whose pre-activation lies within ε/2 of θ.",
            "The window is a boolean mask, |(x − θ)/ε| < ½, of shape [batch, d_sae]; θ, shape [d_sae], broadcasts "
            "against x.",
            "Multiply the mask, the paper's factor −θ/ε and grad_output, then sum over the batch (dim 0): θ is one "
            "number per latent.",
        ),
        difficulty=3,
        importance=3,
        minutes=15,
    ),
    Exercise(
        function="gated_forward",
        points=1,
        cases=lambda: [
            Case(_gated_case(24, 5, 4, 8), "batch 5, d_in 4, d_sae 8"),
            Case(_gated_case(25, 6, 6, 5), "batch 6, d_in 6, d_sae 5"),
        ],
        reference=ref.gated_forward,
        atol=1e-5,
        hints=(
            "Two paths read the same centred input x − b_dec: one decides whether each latent fires (a 0/1 step), the "
            "other how strongly (a ReLU).",
            "The magnitude path's weights are W_enc with column i scaled by exp(r_mag[i]): a [d_sae] vector "
            "broadcasts over the columns of [d_in, d_sae].",
            "The gate is the comparison `π_gate > 0` (a step, not a ReLU); multiply it with the magnitudes, then "
            "decode as in `sae_forward`.",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="ce_loss_with_sae",
        points=2,
        cases=lambda: [Case(_ce_case(26, 2, 12, 32), "2 sequences of 12 tokens, a random SAE at blocks.6.hook_resid_pre")],
        reference=ref.ce_loss_with_sae,
        atol=1e-3,
        hints=(
            "A hook function receives the activation [seq, pos, d_model]; whatever it returns replaces it for the "
            "rest of the forward pass.",
            "Reconstruct positions 1: only (`resid[:, 1:]`) with your `sae_forward` and the four tensors you are "
            "given, then put position 0 back in front (`torch.cat` along dim 1).",
            "`model.run_with_hooks(tokens, return_type=\"loss\", fwd_hooks=[(hook_name, your_hook)])` returns the mean "
            "loss as a tensor: return it as a Python float.",
        ),
        difficulty=3,
        importance=5,
        minutes=15,
    ),
    Exercise(
        function="feature_logit_effects",
        points=1,
        cases=lambda: [Case(_logit_case(27, 5), "a random direction, k = 5"), Case(_logit_case(28, 8), "k = 8")],
        reference=ref.feature_logit_effects,
        hints=(
            "A direction's effect on a token's logit is one dot product with that token's column of `W_U`: one "
            "vector–matrix product gives all d_vocab of them.",
            "`topk` returns the largest first; the most negative effects are the largest of the negated effects.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
]

check = Checks(EXERCISES)


# ---------------------------------------------------------------------------------------------
# Small helpers for the notebook


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
