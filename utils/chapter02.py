"""Chapter 02 — sparse autoencoders, from toy models to a real language model: data, plots and checks.

Bricken et al. 2023 (Towards Monosemanticity), Cunningham et al. 2023, Templeton et al. 2024,
Gao et al. 2024 (TopK), Rajamanoharan et al. 2024 (Gated, JumpReLU). The reference implementations
are in `utils/references/chapter02.py`; the SAE library built from them (architectures, `train_sae`,
metrics, SAELens I/O, the cached language-model SAE) in `utils/sae/`. The learner writes each function
in the notebook; `check.<name>(fn)` compares it with the reference on the fixed cases below.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise, match
from utils.models import load_model
from utils.paths import SAE_HOOK
from utils.references import chapter02 as ref
from utils.references.chapter01 import generate_batch
from utils.sae.base import SAEConfig

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
    """Loss, L0 and explained variance during training, one line per run (held-out explained variance
    dashed, when the run logged it)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for name, hist in histories.items():
        for ax, key in zip(axes, ["loss", "l0", "variance_explained"]):
            label = f"{name} (training batch)" if key == "variance_explained" else name
            (line,) = ax.plot(hist["step"], hist[key], label=label)
        if hist.get("held_out_variance_explained"):
            held = hist["held_out_variance_explained"]
            axes[2].plot(hist["step"], held, ls="--", color=line.get_color(), label=f"{name} (held out)")
    for ax, key in zip(axes, ["loss", "L0", "variance explained"]):
        ax.set(xlabel="step", title=key)
    axes[0].set_yscale("log")
    # L0 from 0: a TopK run's L0 is k at every step, and autoscaling a flat line magnifies float noise
    # (31.995 once in 1,200 steps) into a different-looking axis from one CPU to another
    axes[1].set_ylim(0, 1.15 * max(max(hist["l0"]) for hist in histories.values()))
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


# The training step, resampling during training and the loop: each runs inside a probe, which builds
# what can't travel to a grading kernel (the optimizer, the config) and returns plain tensors.

PARAM_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")


def _stand_in_loss(params: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """What `step_probe` gives the training step as its loss_fn: not an SAE's loss, any differentiable
    loss of the four tensors will do; its target 2x pulls W_dec's rows to grow (a radial gradient)."""
    acts = torch.sigmoid(x @ params["W_enc"] + params["b_enc"])
    x_hat = acts @ params["W_dec"] + params["b_dec"]
    return (2 * x - x_hat).pow(2).sum(-1).mean(), acts, x_hat


def step_probe(step_fn: Callable, x: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor, steps: int) -> dict:
    """The probe of `sae_training_step`'s check: ``steps`` steps with Adam (lr 0.05) on `_stand_in_loss`;
    the optimizer's own tensors after each step and what each call returned."""
    params = {name: t.detach().clone().requires_grad_(True) for name, t in zip(PARAM_NAMES, (W_enc, b_enc, W_dec, b_dec))}
    optimizer = torch.optim.Adam(params.values(), lr=0.05)
    held = optimizer.param_groups[0]["params"]  # what the optimizer updates, whatever the step does to the dict
    out: dict[str, list] = {"losses": [], **{name: [] for name in PARAM_NAMES}}
    with torch.enable_grad():
        for _ in range(steps):
            returned = step_fn(params, optimizer, x, _stand_in_loss)
            loss = returned[0] if isinstance(returned, (tuple, list)) and returned else returned
            out["losses"].append(loss.detach().float().reshape(()) if isinstance(loss, Tensor) else loss)
            for name, tensor in zip(PARAM_NAMES, held):
                out[name].append(tensor.detach().clone())
    stackable = {key for key, value in out.items() if value and all(isinstance(v, Tensor) for v in value)}
    return {key: torch.stack(value) if key in stackable else value for key, value in out.items()}


def _step_case(seed: int, batch: int, d_in: int, d_sae: int, steps: int) -> tuple:
    return (*_sae_case(seed, batch, d_in, d_sae, unit=True), steps)


def _compare_step(expected: dict, got: object) -> str | None:
    """Decoder rows of unit norm after every step first (the constraint's visible half), then the values."""
    problem = match(expected, got, atol=1e-5, rtol=1e-4)
    if problem is None:
        return None
    if isinstance(got, dict) and isinstance(got.get("W_dec"), Tensor) and got["W_dec"].shape == expected["W_dec"].shape:
        norms = got["W_dec"].norm(dim=-1)
        bad = (norms - 1).abs() > 1e-4
        if bad.any():
            step = int(bad.any(-1).nonzero()[0])
            return (f"after step {step + 1} the decoder rows have norms from {norms[step].min():.4g} to {norms[step].max():.4g}, "
                    "not 1: they must be rescaled to unit norm after the optimizer's step")
    return problem


def _diagnosed_exactly(fn: Callable) -> Callable:
    """The identity, as the check's ``wrap``: with it, a known mistake is named only when the learner's
    output is that mistake's (the engine then skips matching failure messages, which these deterministic
    checks do not need)."""
    return fn


def _moment_fill(params: dict[str, Tensor]) -> Tensor:
    """A loss that gives every entry of every tensor a gradient, so that Adam has moments for all of them."""
    g = _g(99)
    return sum((t * torch.randn(t.shape, generator=g)).sin().sum() for t in params.values())


def resample_probe(
    fn: Callable, x: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor, dead: Tensor, seed: int
) -> dict:
    """The probe of `resample_in_training`'s check: an Adam optimizer with moments for every entry (two
    steps), then the learner's resampling; the optimizer's own tensors and both moments of each."""
    params = {name: t.detach().clone().requires_grad_(True) for name, t in zip(PARAM_NAMES, (W_enc, b_enc, W_dec, b_dec))}
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    with torch.enable_grad():
        for _ in range(2):
            optimizer.zero_grad()
            _moment_fill(params).backward()
            optimizer.step()
    held = optimizer.param_groups[0]["params"]
    before = {name: t.detach().clone() for name, t in zip(PARAM_NAMES, held)}
    returned = fn(params, optimizer, x, dead, seed)
    return {
        "before": before,
        "params": {name: t.detach().clone() for name, t in zip(PARAM_NAMES, held)},
        "exp_avg": {name: optimizer.state[t]["exp_avg"].clone() for name, t in zip(PARAM_NAMES, held)},
        "exp_avg_sq": {name: optimizer.state[t]["exp_avg_sq"].clone() for name, t in zip(PARAM_NAMES, held)},
        "returned": returned if returned is None else "something",
    }


def _resample_training_case(seed: int, dead_latents: list[int], batch: int = 64) -> tuple:
    """Like `_resample_case`, but only one input is badly reconstructed (the latents with random directions
    are all silent, dead or not): every correct resampling picks it."""
    x, W_enc, b_enc, W_dec, b_dec, dead, _ = _resample_case(seed, dead_latents, batch)
    b_enc[4:] = -100.0
    x[:, 4:] = 0.0
    x[batch // 2, 4:] = torch.tensor([2.0, -1.0])
    return x, W_enc, b_enc, W_dec, b_dec, dead, seed


def _compare_resample_training(expected: dict, got: object) -> str | None:
    """The optimizer's tensors first (did the new values reach them?), then Adam's moments."""
    problem = match(expected, got, atol=1e-5, rtol=1e-4)
    shaped = problem is not None and isinstance(got, dict) and all(isinstance(got.get(k), dict) for k in ["params", "before"])
    if shaped and all(isinstance(got["params"].get(n), Tensor) for n in PARAM_NAMES):
        if torch.equal(got["params"]["W_dec"], got["before"]["W_dec"]):
            return ("the optimizer's W_dec did not change: write the new values into params' own tensors, in place "
                    "(`copy_`), since those are the tensors the optimizer updates")
    return problem


@functools.cache
def _toy_model_features() -> Tensor:
    """W [12, 40] of chapter 01's toy model as section 5 trains it (fewer, smaller steps): 40 features in 12 dimensions."""
    from utils.toy_models import train_toy_models

    model, _ = train_toy_models(40, 12, torch.tensor([0.02]), torch.ones(40), steps=1000, batch_size=256, seed=0,
                                desc="toy model (check)")
    return model.W.detach()[0].clone()


TOY_P = 0.02
TOY_SHIFT = 1.0  # held_out of the toy cases is shifted by this on every dimension


@functools.cache
def _toy_training_data(seed: int, n: int = 60_000) -> dict[str, Tensor]:
    W = _toy_model_features()
    return {
        "train": toy_hidden_batch(W, n, TOY_P, _g(seed)),
        "held_out": toy_hidden_batch(W, 4096, TOY_P, _g(seed + 1)) + TOY_SHIFT,
        "fresh": toy_hidden_batch(W, 20_000, TOY_P, _g(seed + 2)),  # kept by the check, never sent
        "features": W.T.clone(),
    }


def _smollm2_rows(n_seqs: int = 160) -> Tensor:
    """The first ``n_seqs`` × 127 SmolLM2 activations at the SAE's hook (outliers dropped), read from the
    chapter's cache when it is there (the same rows), else collected once (≈ 30 s)."""
    from safetensors import safe_open

    from utils import data

    model = load_model(verbose=False)
    full = data._cache_path(model, SAE_HOOK, 128, 1200)
    if full.exists():
        with safe_open(str(full), "pt") as f:
            acts = f.get_slice("activations")[: n_seqs * 127]
    else:
        acts = data.cached_activations(model, SAE_HOOK, 128, n_seqs, max_norm_ratio=None, verbose=False)
    return data.drop_outliers(acts, 10.0).clone()


@functools.cache
def _lm_training_data() -> dict[str, Tensor]:
    rows = _smollm2_rows()
    return {"train": rows[:14_336].clone(), "held_out": rows[14_336:16_384].clone(), "fresh": rows[16_384:].clone()}


TRAINING_CASES = {
    "toy": lambda: _toy_training_data(40),
    "toy, other seeds": lambda: _toy_training_data(50),
    "smollm2": _lm_training_data,
}
_TOY_CFG = dict(d_sae=48, steps=1000, batch_size=256, lr=3e-3, l1_coeff=0.3, tied_init=False, init_b_enc=-0.6,
                resample="anthropic", resample_every=100, dead_window=50, log_every=100)
TRAINING_CONFIGS = {
    "toy": _TOY_CFG,
    "toy, other seeds": {**_TOY_CFG, "seed": 1},
    "smollm2": dict(d_sae=256, steps=200, batch_size=256, lr=2e-3, l1_coeff=5.0, log_every=50),
}
# What a correct loop reaches on the fresh activations the check keeps (the reference: toy 38 of 40
# features recovered, L0 ≈ 0.9; SmolLM2 variance explained ≈ 0.69 at L0 ≈ 83), with room for other
# correct orders of operations; without resampling the toy run recovers ≈ 21, without the L1 term its
# L0 is ≈ 15.
MIN_RECOVERED, MAX_TOY_L0 = 33, 2.0
MIN_LM_VE, MAX_LM_L0 = 0.64, 128.0


def train_probe(train_fn: Callable, case: str, activations: Tensor, held_out: Tensor) -> dict:
    """The probe of `train_sae`'s check: the learner's loop (and so the learner's ReLU SAE, step and
    resampling) with the case's `SAEConfig`, no progress bar."""
    with torch.enable_grad():
        returned = train_fn(activations, SAEConfig(**TRAINING_CONFIGS[case]), held_out=held_out, desc=None)
    params, history = returned if isinstance(returned, (tuple, list)) and len(returned) == 2 else (returned, None)
    return {"case": case, "params": params, "history": history}


TRAINING_LABELS = {
    "toy": "the toy model's 40 features in 12 dimensions, 60,000 activations; your ReLU SAE with 48 latents from a poor start "
           "(independent encoder, encoder biases −0.6), λ = 0.3, resampled every 100 steps, 1,000 steps; held_out is shifted by "
           "+1 on every dimension, so an SAE that never trained on it reconstructs it badly",
    "toy, other seeds": "the same with seed 1 and other activations",
    "smollm2": "14,336 SmolLM2 activations at blocks.12.hook_resid_pre (2,048 more as held_out); your ReLU SAE with 256 "
               "latents, λ = 5, 200 steps of 256",
}


def _training_case(case: str, hidden: bool = False) -> Case:
    d = TRAINING_CASES[case]()
    return Case((case, d["train"], d["held_out"]), TRAINING_LABELS[case], hidden=hidden)


def _run_relu(params: dict, x: Tensor) -> tuple[Tensor, Tensor]:
    return ref.sae_forward(x.float(), *(params[name].float() for name in PARAM_NAMES))


def _compare_training(expected: dict, got: object) -> str | None:
    """Statistical: the trained SAE is judged on fresh activations the check keeps, not against the
    reference's tensors (another correct loop trains another SAE)."""
    case = expected["case"]
    reference = expected["params"]
    if not isinstance(got, dict) or not isinstance(got.get("params"), dict):
        return "expected `train_sae` to return (params, history)"
    params, history = got["params"], got["history"]
    for name in PARAM_NAMES:
        if not isinstance(params.get(name), Tensor) or params[name].shape != reference[name].shape:
            return f"params[{name!r}]: expected a tensor of shape {tuple(reference[name].shape)}"
        if not torch.isfinite(params[name]).all():
            return f"params[{name!r}] has NaN or infinite entries"
    norms = params["W_dec"].norm(dim=-1)
    if (norms - 1).abs().max() > 1e-3:
        return (f"the trained decoder rows have norms from {norms.min():.4g} to {norms.max():.4g}, not 1: they must "
                "be rescaled to unit norm after every step")
    if not isinstance(history, dict) or not isinstance(history.get("step"), list):
        return "expected the history to be a dict of lists, with the key 'step'"
    want = expected["history"]
    for key in want:
        if not isinstance(history.get(key), list) or len(history[key]) != len(want[key]):
            return f"history[{key!r}]: expected a list of {len(want[key])} values (every cfg.log_every steps and the last)"
    data = TRAINING_CASES[case]()
    fresh = data["fresh"].float()
    acts, x_hat = _run_relu(params, fresh)
    ve, l0 = ref.variance_explained(fresh, x_hat), ref.firing_stats(acts)["l0"]
    ve_held = ref.variance_explained(data["held_out"].float(), _run_relu(params, data["held_out"])[1])
    if case.startswith("toy"):
        if ve < 0.5 and ve_held > ve:
            return (f"your SAE explains {ve_held:.2f} of held_out's variance but only {ve:.2f} of fresh activations like "
                    "the training data's: it was trained on held_out")
        if l0 > MAX_TOY_L0:
            ref_l0 = ref.firing_stats(_run_relu(reference, fresh)[0])["l0"]
            return (f"L0 is {l0:.2f} on fresh activations, but only {TOY_P * 40:.1f} true features are active per input "
                    f"(the reference: {ref_l0:.2f}): the sparsity penalty is missing or too weak")
        recovered = int((ref.feature_recovery(data["features"], params["W_dec"]) > 0.9).sum())
        if recovered < MIN_RECOVERED:
            ref_recovered = int((ref.feature_recovery(data["features"], reference["W_dec"]) > 0.9).sum())
            return (f"{recovered} of 40 true features recovered (cosine > 0.9; at least {MIN_RECOVERED} needed, the reference "
                    f"{ref_recovered}): from this poor start many latents die, and only resampling them brings them back")
    else:
        if l0 > MAX_LM_L0:
            return (f"L0 is {l0:.1f} of {params['W_dec'].shape[0]} latents on held-back activations (at most {MAX_LM_L0:g}): "
                    "is the sparsity penalty in the loss?")
        if ve < MIN_LM_VE:
            ref_ve = ref.variance_explained(fresh, _run_relu(reference, fresh)[1])
            return (f"variance explained on held-back SmolLM2 activations {ve:.3f} (at least {MIN_LM_VE} needed, the reference "
                    f"{ref_ve:.3f})")
    last = (history.get("held_out_variance_explained") or [None])[-1]
    last = last.item() if isinstance(last, Tensor) and last.numel() == 1 else last
    if not (isinstance(last, (int, float)) and abs(last - ve_held) < 1e-3):
        return (f"history['held_out_variance_explained'] ends with {last!r}, but the trained SAE explains {ve_held:.4f} "
                "of held_out's variance")
    return None


_CLEAN_RUNS: dict[bytes, Tensor] = {}


def steering_probe(fn: Callable, model, tokens: Tensor, hook_name: str, W_dec: Tensor, latent: int, alpha: float) -> dict:
    """What the steering check compares: the steered log-probs, beside the clean run's (once per prompt)
    and the ids of the 10 tokens the latent's direction promotes most directly (applied to the reference
    and known mistakes)."""
    key = tokens.numpy().tobytes()
    if key not in _CLEAN_RUNS:
        with torch.no_grad():
            _CLEAN_RUNS[key] = model(tokens)[:, -1].log_softmax(-1)
    return {"steered": fn(model, tokens, hook_name, W_dec, latent, alpha), "clean": _CLEAN_RUNS[key],
            "promoted": (W_dec[latent] @ model.W_U).topk(10).indices}


def _with_clean_run(fn: Callable) -> Callable:
    return functools.partial(steering_probe, fn)


def _steering_case(seed: int, hook_name: str, latent: int, alpha: float) -> tuple:
    from utils.data import token_sequences

    model = load_model(verbose=False)
    tokens = token_sequences(model, 14, 40)[[seed, seed + 7]]
    W_dec = F.normalize(torch.randn(24, model.cfg.d_model, generator=_g(seed)), dim=-1)
    return model, tokens, hook_name, W_dec, latent, alpha


def _compare_steering(expected: dict, got: object) -> str | None:
    """The steered next-token distribution must be the reference's (KL below 1e-5 nats: float noise is
    ~1e-10, an unscaled unit row already moves it 1e-4); the message measures both against the clean run."""
    want = expected["steered"]
    if not isinstance(got, Tensor) or got.shape != want.shape or got.dtype != want.dtype:
        return match(want, got)
    if torch.allclose(got, want, atol=1e-4, rtol=1e-4):
        return None
    if not torch.isfinite(got).all():
        return "the log-probabilities have NaN or infinite entries"
    total = got.exp().sum(-1)
    if (total - 1).abs().max() > 1e-3:
        return (f"these are not log-probabilities: their exponentials sum to {total.min():.3g}–{total.max():.3g}, not 1 "
                "(log_softmax the logits)")
    kl = (want.exp() * (want - got)).sum(-1)
    if kl.max() <= 1e-5:
        return None
    clean, promoted = expected["clean"], expected["promoted"]

    def change(logprobs: Tensor) -> tuple[float, float]:
        kl_from_clean = (clean.exp() * (clean - logprobs)).sum(-1).mean().item()
        return kl_from_clean, (logprobs - clean).gather(-1, promoted.expand(len(clean), -1)).mean().item()

    (kl_yours, gain_yours), (kl_ref, gain_ref) = change(got), change(want)
    return (f"your steered distribution is {kl.max():.3g} nats (KL) from the reference's: it moved {kl_yours:.3g} nats from "
            f"the clean run (the reference {kl_ref:.3g}) and the 10 tokens the latent promotes gained {gain_yours:+.3g} nats "
            f"of log-prob on average (the reference {gain_ref:+.3g})")


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
        function="sae_training_step",
        points=2,
        cases=lambda: [
            Case(_step_case(30, 16, 5, 8, 3), "3 steps, batch 16, d_in 5, d_sae 8, a stand-in loss that pulls W_dec's rows to "
                 "grow"),
            Case(_step_case(31, 32, 7, 12, 4), "4 steps, batch 32, d_in 7, d_sae 12"),
            Case(_step_case(32, 8, 4, 6, 3), "3 steps, batch 8, d_in 4, d_sae 6", hidden=True),
        ],
        reference=ref.sae_training_step,
        probe="utils.chapter02:step_probe",
        wrap=_diagnosed_exactly,
        compare=_compare_step,
        hints=(
            "The order is the exercise: old gradients out, new ones in, W_dec's gradient made tangent to its rows, the "
            "optimizer's step, W_dec's rows back to norm 1.",
            "`optimizer.zero_grad()` before `loss.backward()`; then, under `torch.no_grad()`, put the second output of your "
            "`constrain_decoder` into `params[\"W_dec\"].grad` before `optimizer.step()`.",
            "Rescale after the step and in place (`div_` by the rows' norms, `keepdim=True`): the optimizer holds that very "
            "tensor, so a new tensor put in the dict would never be trained.",
        ),
        difficulty=3,
        importance=5,
        minutes=15,
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
        function="resample_in_training",
        points=1,
        cases=lambda: [
            Case(_resample_training_case(33, [4, 6]), "d_in 6, d_sae 8, latents 4 and 6 dead, one badly reconstructed input, "
                 "Adam with moments for every entry"),
            Case(_resample_training_case(34, [5, 6, 7]), "latents 5, 6, 7 dead"),
        ],
        reference=ref.resample_in_training,
        probe="utils.chapter02:resample_probe",
        wrap=_diagnosed_exactly,
        compare=_compare_resample_training,
        hints=(
            "Two jobs: put the new values where the optimizer will see them, and wipe Adam's memory of the dead latents "
            "only (the alive ones keep theirs).",
            "`params[name].copy_(new[name])` under `torch.no_grad()` writes into the tensor the optimizer holds; "
            "`optimizer.state[params[name]]` is a dict whose \"exp_avg\" and \"exp_avg_sq\" have the parameter's shape.",
            "A latent is a column of W_enc but an entry of b_enc and a row of W_dec: index the moments with `[:, dead]` "
            "for W_enc and `[dead]` for the other two.",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="train_sae",
        points=3,
        cases=lambda: [_training_case("toy"), _training_case("smollm2"), _training_case("toy, other seeds", hidden=True)],
        reference=ref.train_sae,
        probe="utils.chapter02:train_probe",
        compare=_compare_training,
        hints=(
            "Set up once (the initial tensors, Adam, the schedule, the batches, one counter per latent), then repeat: step, "
            "schedule, counters, resampling when it is due, logging when it is due.",
            "`since_fired` is a [d_sae] integer tensor: where a latent fired in the batch (`(acts != 0).any(0)`) it goes back "
            "to 0, elsewhere it grows by 1 (`torch.where`); dead = since_fired >= cfg.dead_window.",
            "The step wants a function of (params, batch): `lambda p, batch: objective.loss(p, batch, cfg, dead)`. For "
            "held_out, `objective.loss` under `torch.no_grad()` gives the reconstruction your `variance_explained` needs.",
        ),
        difficulty=4,
        importance=5,
        minutes=30,
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
    Exercise(
        function="steer_with_latent",
        points=1,
        cases=lambda: [
            Case(_steering_case(0, SAE_HOOK, 5, 40.0), "2 sequences of 14 tokens, a random unit row at "
                 "blocks.12.hook_resid_pre, α = 40"),
            Case(_steering_case(3, "blocks.6.hook_resid_pre", 11, -25.0), "at blocks.6.hook_resid_pre, α = −25"),
            Case(_steering_case(5, SAE_HOOK, 2, 80.0), "α = 80", hidden=True),
        ],
        reference=ref.steer_with_latent,
        wrap=_with_clean_run,
        compare=_compare_steering,
        hints=(
            "A hook function gets the activation [batch, pos, d_model] and returns what replaces it: here the activation "
            "plus the scaled decoder row, at every position.",
            "Row `latent` of W_dec ([d_model]) broadcasts over batch and positions; run the model with "
            "`model.run_with_hooks(tokens, fwd_hooks=[(hook_name, your_hook)])`.",
            "Keep the last position's logits (`[:, -1]`) and `log_softmax` them over the vocabulary.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
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
