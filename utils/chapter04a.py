"""Section 04a — Sparse feature circuits (Marks et al. 2024, arXiv 2403.19647): task, SAEs, plots, checks.

Subject–verb agreement in SmolLM2-135M, explained with SAE latents: TopK SAEs (chapter 02's recipe) on
the residual stream before blocks 4, 8 and 12, spliced in by `utils/feature_circuits.py` (nodes,
attribution, integrated gradients, activation patching, faithfulness). The reference implementations
are in `utils/references/chapter04a.py`. A node is the same latent at *every* position (scores
summed over positions, averaged over prompts).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import matplotlib.pyplot as plt
import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from utils.feature_circuits import K, Nodes
from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise
from utils.references import chapter04a as ref
from utils.sae.latents import max_activating_html
from utils.sae.model import encode
from utils.sae.pretrained import pretrained_sae

LAYERS = (4, 8, 12)
D_SAE = 4608  # the SAEs are TopK SAEs with k = K = 32 and 4,608 latents (chapter 02's recipe)

# single-token nouns (with a leading space) whose plural is also one token
NOUNS = [
    ("key", "keys"),
    ("author", "authors"),
    ("pilot", "pilots"),
    ("doctor", "doctors"),
    ("teacher", "teachers"),
    ("farmer", "farmers"),
    ("student", "students"),
    ("officer", "officers"),
    ("painter", "painters"),
    ("manager", "managers"),
    ("dog", "dogs"),
    ("car", "cars"),
    ("house", "houses"),
    ("book", "books"),
    ("friend", "friends"),
    ("girl", "girls"),
    ("boy", "boys"),
    ("player", "players"),
    ("driver", "drivers"),
    ("child", "children"),
    ("man", "men"),
    ("woman", "women"),
    ("table", "tables"),
    ("door", "doors"),
    ("letter", "letters"),
    ("cat", "cats"),
    ("bird", "birds"),
    ("tree", "trees"),
    ("box", "boxes"),
    ("window", "windows"),
    ("picture", "pictures"),
    ("lawyer", "lawyers"),
    ("senator", "senators"),
    ("guard", "guards"),
    ("nurse", "nurses"),
    ("worker", "workers"),
    ("singer", "singers"),
    ("king", "kings"),
    ("road", "roads"),
    ("chair", "chairs"),
]
PREPOSITIONS = [" of", " beside"]  # the model agrees across these on ~92% of prompts (measured on 120 each)
FAILING_PREPOSITIONS = [" below", " like", " after", " before"]  # ... and fails across these (6–56%)


# ---------------------------------------------------------------------------------------------
# The task: subject–verb agreement across a prepositional phrase


def sva_prompts(model: HookedTransformer, n: int = 16, seed: int = 0, prepositions: list[str] = PREPOSITIONS) -> dict:
    """``n`` prompts "The {subject}{prep} the {distractor}" (half singular subjects, half plural), each
    distractor of the other number, and their corruptions (the subject's number flipped).

    Returns tokens ``clean``/``corrupt`` [n, pos], the verb tokens ``correct``/``wrong`` [n] (" is"/" are"
    for the clean prompt), ``singular`` [n] and the texts. Checks that every noun and verb is one token
    and that all prompts, clean and corrupted, have the same number of tokens.
    """
    for word in [w for pair in NOUNS for w in pair]:
        assert len(model.to_tokens(" " + word, prepend_bos=False)[0]) == 1, f"' {word}' is not a single token"
    is_, are = model.to_single_token(" is"), model.to_single_token(" are")
    rng = random.Random(seed)
    clean, corrupt, singular = [], [], []
    for i in range(n):
        (s1, p1), (s2, p2) = rng.sample(NOUNS, 2)
        prep = rng.choice(prepositions)
        subject, flipped, distractor = (s1, p1, p2) if i % 2 == 0 else (p1, s1, s2)
        clean.append(f"The {subject}{prep} the {distractor}")
        corrupt.append(f"The {flipped}{prep} the {distractor}")
        singular.append(i % 2 == 0)
    tokens = model.to_tokens(clean + corrupt)
    lengths = {len(model.to_tokens(text)[0]) for text in clean + corrupt}
    assert len(lengths) == 1, f"prompts of different token lengths: {lengths}"
    singular = torch.tensor(singular)
    correct = torch.where(singular, is_, are)
    return {
        "clean": tokens[:n],
        "corrupt": tokens[n:],
        "correct": correct,
        "wrong": torch.where(singular, are, is_),
        "singular": singular,
        "clean_text": clean,
        "corrupt_text": corrupt,
    }


def task_accuracy(model: HookedTransformer, data: dict, metric_fn: Callable = ref.logit_diff) -> tuple[float, float]:
    """(accuracy, mean logit difference) of the model on the clean prompts."""
    with torch.no_grad():
        last = model.unembed(model.ln_final(model(data["clean"], stop_at_layer=model.cfg.n_layers)[:, -1:]))
        diff = metric_fn(last, data["correct"], data["wrong"])
    return (diff > 0).float().mean().item(), diff.mean().item()



def load_saes(model: HookedTransformer, verbose: bool = True) -> dict[int, dict[str, Tensor]]:
    """The three TopK SAEs (cached on disk after the first call; ~1 min each to train cold)."""
    saes = {}
    for layer in LAYERS:
        kwargs = {} if layer == 12 else {"n_seqs": 400, "steps": 300}  # layer 12: chapter 02's cached SAE
        params, cfg = pretrained_sae(model, f"blocks.{layer}.hook_resid_pre", verbose=verbose, **kwargs)
        saes[layer] = params
        if verbose:
            print(f"SAE on blocks.{layer}.hook_resid_pre: variance explained {cfg['metadata']['variance_explained']:.2f}")
    return saes



# ---------------------------------------------------------------------------------------------
# Pictures


def plot_methods(attrib: Tensor, ig: Tensor, true: Tensor, labels: list[str]) -> None:
    """Attribution patching and IG against true activation patching, one dot per node."""
    _, axes = plt.subplots(1, 2, figsize=(10, 4))
    lim = float(torch.cat([attrib, ig, true]).abs().max()) * 1.1
    for ax, estimate, name in zip(axes, [attrib, ig], ["attribution patching", "integrated gradients (10 steps)"]):
        r = torch.corrcoef(torch.stack([estimate, true]))[0, 1].item()
        ax.scatter(true, estimate, s=18)
        for x, y, label in zip(true.tolist(), estimate.tolist(), labels):
            if abs(x) > 0.25 * lim or abs(y) > 0.25 * lim:
                ax.annotate(label, (x, y), fontsize=7)
        ax.plot([-lim, lim], [-lim, lim], color="gray", lw=0.7, ls="--")
        ax.set(
            xlim=(-lim, lim),
            ylim=(-lim, lim),
            xlabel="activation patching (true effect)",
            ylabel=name,
            title=f"{name}: r = {r:.2f}",
        )
    plt.tight_layout()


def plot_faithfulness(sizes: list[int], faith: Tensor, completeness: Tensor | None = None) -> None:
    _, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(sizes, faith, marker="o", label="faithfulness of the top-n circuit")
    if completeness is not None:
        ax.plot(sizes, completeness, marker="s", label="faithfulness of its complement (completeness)")
    ax.axhline(1, color="gray", lw=0.7, ls="--")
    ax.axhline(0, color="gray", lw=0.7)
    ax.set(xscale="log", xlabel="nodes kept (n, across the 3 layers)", ylabel="(m(C) − m(∅)) / (m(M) − m(∅))")
    ax.legend(loc="upper left", fontsize=8)
    plt.tight_layout()


def node_label(layer: int, index: int) -> str:
    return f"L{layer}/ε" if index == D_SAE else f"L{layer}/f{index}"


def plot_circuit(scores: dict[int, Tensor], keep: dict[int, Tensor]) -> None:
    """The circuit as a layered picture: one column per layer, its kept nodes sorted by effect
    (red: pushes towards the right verb when patched, i.e. negative IE; blue: positive), size ∝ |IE|.
    No edges (see the notebook)."""
    _, ax = plt.subplots(figsize=(9, 4.5))
    peak = max(float(s[keep[layer]].abs().max()) for layer, s in scores.items() if keep[layer].any())
    for column, layer in enumerate(scores):
        indices = keep[layer].nonzero().flatten()
        indices = indices[scores[layer][indices].abs().argsort(descending=True)]
        for row, index in enumerate(indices.tolist()):
            value = scores[layer][index].item()
            ax.scatter(column, -row, s=40 + 900 * abs(value) / peak, color="tab:red" if value < 0 else "tab:blue", alpha=0.6)
            ax.annotate(f"{node_label(layer, index)}  {value:+.2f}", (column + 0.08, -row), fontsize=8, va="center")
    ax.set(
        xticks=range(len(scores)),
        xticklabels=[f"blocks.{layer}.hook_resid_pre" for layer in scores],
        yticks=[],
        xlim=(-0.3, len(scores) - 0.2),
    )
    ax.set_title("the circuit's nodes per layer (IE with integrated gradients; red = needed for the right verb)")
    plt.tight_layout()


def top_contexts_html(
    model: HookedTransformer,
    saes: dict,
    nodes: list[tuple[int, int]],
    n_seqs: int = 48,
    seq_len: int = 64,
    n: int = 5,
) -> str:
    """Max-activating corpus contexts for latents (layer, index): one forward pass (to the deepest layer) for all."""
    from utils.data import token_sequences

    tokens = token_sequences(model, seq_len=seq_len, n_seqs=n_seqs)
    names = {f"blocks.{layer}.hook_resid_pre" for layer, _ in nodes}
    with torch.no_grad():
        _, cache = model.run_with_cache(
            tokens, stop_at_layer=max(layer for layer, _ in nodes) + 1, names_filter=lambda name: name in names
        )
        parts = []
        for layer, index in nodes:
            resid = cache[f"blocks.{layer}.hook_resid_pre"][:, 1:]
            norm = resid.norm(dim=-1)
            f = encode(saes[layer], resid, K)[..., index] * (norm < 10 * norm.median())  # skip attention-sink outliers
            values = torch.cat([torch.zeros(len(tokens), 1), f], dim=1)
            parts.append(max_activating_html(model, tokens, values, n=n, title=node_label(layer, index)))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Checks: the cases every learner's function is run on


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sparse(shape: tuple, g: torch.Generator, density: float = 0.3) -> Tensor:
    return torch.relu(torch.randn(shape, generator=g)) * (torch.rand(shape, generator=g) < density)


def _nodes_case(seed: int, batch: int, pos: int, d_sae: int, d_model: int) -> tuple[Nodes, Nodes, Nodes]:
    g = _g(seed)
    grad = {"latents": torch.randn(batch, pos, d_sae, generator=g), "error": torch.randn(batch, pos, d_model, generator=g)}
    clean = {"latents": _sparse((batch, pos, d_sae), g), "error": torch.randn(batch, pos, d_model, generator=g)}
    patch = {"latents": _sparse((batch, pos, d_sae), g), "error": torch.randn(batch, pos, d_model, generator=g)}
    return grad, clean, patch


def _metric_case(seed: int, batch: int, pos: int, vocab: int) -> tuple[Tensor, Tensor, Tensor]:
    g = _g(seed)
    logits = torch.randn(batch, pos, vocab, generator=g)
    correct = torch.randint(0, vocab, (batch,), generator=g)
    return logits, correct, (correct + torch.randint(1, vocab, (batch,), generator=g)) % vocab


def _ig_case(seed: int, batch: int, pos: int, d_sae: int, d_model: int, steps: int) -> tuple:
    """A smooth, non-linear toy "model" m(f, ε) = Σ tanh(f·A + ε·B) · c, so the gradient changes along the path."""
    g = _g(seed)
    _, clean, patch = _nodes_case(seed + 1, batch, pos, d_sae, d_model)
    A = torch.randn(d_sae, 3, generator=g)
    B = torch.randn(d_model, 3, generator=g) * 0.5
    c = torch.randn(3, generator=g)
    return clean, patch, A, B, c, steps


def ig_probe(ig_fn: Callable, clean: Nodes, patch: Nodes, A: Tensor, B: Tensor, c: Tensor, steps: int) -> Tensor:
    """The probe of `integrated_gradients`' check: runs it with the toy model's exact gradients."""

    def grad_fn(points: Nodes) -> Nodes:
        assert set(points) == {"latents", "error"}, "grad_fn takes a dict with the keys 'latents' and 'error'"
        with torch.enable_grad():
            f = points["latents"].detach().requires_grad_(True)
            e = points["error"].detach().requires_grad_(True)
            m = (torch.tanh(f @ A + e @ B) @ c).sum()
            gf, ge = torch.autograd.grad(m, [f, e])
        return {"latents": gf, "error": ge}

    return ig_fn(grad_fn, clean, patch, steps)


def _scores_case(seed: int, sizes: list[int], n: int) -> tuple[dict[int, Tensor], int]:
    g = _g(seed)
    layers = [4, 8, 12][: len(sizes)]
    # signed scores of very different scales per layer, so that a per-layer or signed ranking differs
    return {layer: torch.randn(size, generator=g) * (1 + 2 * i) for i, (layer, size) in enumerate(zip(layers, sizes))}, n


def _ablate_case(seed: int, batch: int, pos: int, d_sae: int, d_model: int, keep_error: bool) -> tuple:
    g = _g(seed)
    _, acts, other = _nodes_case(seed, batch, pos, d_sae, d_model)
    mean = {"latents": other["latents"].mean(0), "error": other["error"].mean(0)}
    keep = torch.rand(d_sae + 1, generator=g) < 0.4
    keep[-1] = keep_error
    return acts, mean, keep


EXERCISES = [
    Exercise(
        function="logit_diff",
        points=1,
        cases=lambda: [
            Case(_metric_case(0, 4, 6, 20), "4 prompts, 6 positions, vocabulary 20"),
            Case(_metric_case(1, 7, 3, 50), "7 prompts, 3 positions, vocabulary 50"),
        ],
        reference=ref.logit_diff,
        atol=1e-6,
        hints=(
            "The next verb is predicted at the final position: that is the only position whose logits the metric reads.",
            "From the [batch, vocab] slice at that position, prompt b needs the entry in column correct[b] (and in "
            "wrong[b]): pair each row with its own column, not every row with every column.",
            "Index with two tensors at once, torch.arange(batch) for the rows and the token ids for the columns; "
            "return one value per prompt, without a mean.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
    Exercise(
        function="attribution",
        points=2,
        cases=lambda: [
            Case(_nodes_case(10, 3, 4, 12, 5), "3 prompts, 4 positions, 12 latents, d_model 5"),
            Case(_nodes_case(11, 5, 2, 20, 8), "5 prompts, 2 positions, 20 latents, d_model 8"),
        ],
        reference=ref.attribution,
        atol=1e-5,
        hints=(
            "A node's estimated effect is the gradient times how far the node moves from clean to patch, added up "
            "over everything that belongs to that node.",
            "Decide which axes make up one node: for a latent only the position axis belongs to it (the latent axis "
            "stays), for the error node both the position axis and the d_model axis do.",
            "The prompt axis goes last, as a mean (the score is an effect on the mean metric); then put the error "
            "node's single score after the d_sae latent scores with torch.cat.",
        ),
        difficulty=2,
        importance=5,
        minutes=10,
    ),
    Exercise(
        function="integrated_gradients",
        points=3,
        cases=lambda: [
            Case(_ig_case(20, 3, 4, 12, 5, 4), "4 steps on a toy non-linear metric"),
            Case(_ig_case(21, 2, 3, 10, 6, 10), "10 steps on a toy non-linear metric"),
            Case(_ig_case(22, 2, 2, 8, 4, 1), "1 step (must equal attribution patching)"),
        ],
        reference=ref.integrated_gradients,
        probe="utils.chapter04a:ig_probe",
        atol=1e-5,
        hints=(
            "Instead of one gradient at the clean point, take the gradient at N evenly spaced points on the straight "
            "line from clean to patch, average them, and use that average where attribution patching used its gradient.",
            "The points sit at α = 0, 1/N, …, (N−1)/N: the clean end is included and the patch end is not (a left "
            "Riemann sum), so that with N = 1 you get attribution patching back.",
            "Give the alphas the shape [steps, 1, 1, 1] so that they broadcast against [batch, pos, …] tensors, call "
            "grad_fn once on the dict of points, and average its gradients over that leading axis.",
        ),
        difficulty=3,
        importance=4,
        minutes=20,
    ),
    Exercise(
        function="top_nodes",
        points=2,
        cases=lambda: [
            Case(_scores_case(30, [10, 7, 12], 5), "3 layers (10, 7, 12 nodes), keep 5"),
            Case(_scores_case(31, [6, 9], 8), "2 layers (6, 9 nodes), keep 8"),
            Case(_scores_case(32, [4, 5, 6], 0), "keep 0 nodes", hidden=True),
        ],
        reference=ref.top_nodes,
        atol=0,
        rtol=0,
        hints=(
            "The ranking is global, over every layer at once (one layer may get all n nodes, another none), and a "
            "large negative effect counts as much as a large positive one.",
            "Put all layers' scores into one vector, choose on it, then cut the resulting mask back into the layers' "
            "pieces, in the order of scores' keys.",
            "torch.topk gives the indices of the n largest entries; set those entries of a boolean vector to True and "
            "split it with the layers' lengths (n = 0 must also work).",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="mean_ablate",
        points=2,
        cases=lambda: [
            Case(_ablate_case(40, 3, 4, 10, 5, keep_error=False), "error node ablated, ~40% of latents kept"),
            Case(_ablate_case(41, 2, 3, 16, 6, keep_error=True), "error node kept, ~40% of latents kept"),
        ],
        reference=ref.mean_ablate,
        atol=1e-6,
        hints=(
            "Each node chooses between two values: this run's activation if it is in the circuit, its mean (the same "
            "for every prompt) if it is not.",
            "For the latents, the mask is keep without its last entry; torch.where broadcasts a [d_sae] mask and a "
            "[pos, d_sae] mean against [batch, pos, d_sae].",
            "The error node is a single node decided by keep[-1] alone: the whole error tensor stays, or the mean "
            "replaces all of it, expanded to the shape of acts['error'].",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="faithfulness",
        points=1,
        cases=lambda: [
            Case((torch.tensor([0.5, 1.0, 2.0, 3.5]), 0.5, 3.5), "m(∅) = 0.5, m(M) = 3.5"),
            Case((torch.tensor([-1.0, 0.2, 1.7]), -2.0, 1.5), "m(∅) = −2, m(M) = 1.5"),
        ],
        reference=ref.faithfulness,
        atol=1e-6,
        hints=(
            "Faithfulness rescales m(C) so that the empty circuit lands at 0 and the full model at 1.",
            "Both the circuit and the full model are measured from the same baseline, m(∅), not from zero.",
            "m_circuit is a vector and the other two are floats: plain tensor arithmetic handles all circuits at once, "
            "no loop needed.",
        ),
        difficulty=1,
        importance=4,
        minutes=5,
    ),
]

check = Checks(EXERCISES)
