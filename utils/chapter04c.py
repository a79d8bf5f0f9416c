"""Section 04c — the linear representation hypothesis and the causal inner product.

Park, Choe & Veitch 2024, "The Linear Representation Hypothesis and the Geometry of Large Language
Models" (ICML 2024, https://arxiv.org/abs/2311.03658, code https://github.com/KihoPark/linear_rep_geometry).
A concept W such as male⇒female is *linearly represented* in the unembedding space if the
differences γ(y1) − γ(y0) of the unembedding vectors of counterfactual word pairs (king/queen,
man/woman, …) all point along one direction γ̄_W. Which directions count as "orthogonal" depends on
the inner product; the paper's *causal inner product* ⟨x, y⟩_C = xᵀ Cov(γ)⁻¹ y (Cov over the
vocabulary) makes causally separable concepts orthogonal, and turns the unembedding direction into
an embedding direction that steers the model.

This module holds the section's data (the concepts' word pairs, the steering prompts), helpers and
plots for the demos, and the checks; the reference implementations are in
`utils/references/chapter04c.py`. The learner writes each function in the notebook;
`check.<name>(fn)` compares it with the reference on the fixed cases below.

Conventions: ``gamma`` is the unembedding matrix with one row per token, ``gamma = model.W_U.T``
[d_vocab, d_model]; ``g`` is its causal transform ``(gamma - mean) @ A`` with ``A = Cov(γ)^(-1/2)``;
a concept's pairs are token ids [pairs, 2], column 0 the base word y0, column 1 the target y1.
"""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise
from utils.models import load_model
from utils.paths import STEER_HOOK
from utils.references import chapter04c as ref

# ---------------------------------------------------------------------------------------------
# Data: concepts as counterfactual word pairs (y0, y1)
#
# Built for SmolLM2's tokenizer: every word below is ONE token when preceded by a space (" king"),
# which `concept_pairs` verifies and enforces (a pair that is not is dropped, and reported). Most
# pairs come from the paper's lists (its word_pairs/ folder), kept when both words are single tokens
# here (the paper's English⇒French list shrinks from 115 to 17 pairs that way; some of its French
# words are English words too: "pain", "rose", "violet"). The last concept, verb⇒3rd person, is a
# *control*: it shares its base words with verb⇒past, so the two are NOT causally separable (you
# can't change "walk" to "walked" without deciding it is not "walks"), and the paper finds such
# related concepts far from orthogonal.

CONCEPTS: dict[str, list[tuple[str, str]]] = {
    "male⇒female": [
        ("actor", "actress"), ("boy", "girl"), ("brother", "sister"), ("dad", "mom"), ("father", "mother"),
        ("gentleman", "lady"), ("god", "goddess"), ("grandfather", "grandmother"), ("groom", "bride"),
        ("he", "she"), ("hero", "heroine"), ("husband", "wife"), ("king", "queen"), ("man", "woman"),
        ("men", "women"), ("prince", "princess"), ("son", "daughter"), ("uncle", "aunt"), ("bull", "cow"),
        ("his", "her"), ("him", "her"), ("boys", "girls"),
    ],
    "English⇒French": [
        ("bread", "pain"), ("cat", "chat"), ("coffee", "café"), ("green", "vert"), ("kitchen", "cuisine"),
        ("one", "un"), ("pink", "rose"), ("purple", "violet"), ("salt", "sel"), ("seven", "sept"),
        ("sixteen", "seize"), ("wall", "mur"), ("wine", "vin"), ("day", "jour"), ("sea", "mer"),
        ("east", "est"), ("down", "bas"),
    ],
    "lower⇒upper": [
        ("always", "Always"), ("apple", "Apple"), ("bear", "Bear"), ("blue", "Blue"), ("book", "Book"),
        ("cat", "Cat"), ("chair", "Chair"), ("computer", "Computer"), ("dance", "Dance"), ("doctor", "Doctor"),
        ("dog", "Dog"), ("forest", "Forest"), ("green", "Green"), ("happy", "Happy"), ("house", "House"),
        ("island", "Island"), ("king", "King"), ("lion", "Lion"), ("mountain", "Mountain"), ("never", "Never"),
        ("ocean", "Ocean"), ("often", "Often"), ("queen", "Queen"), ("red", "Red"), ("river", "River"),
        ("sun", "Sun"), ("table", "Table"), ("teacher", "Teacher"), ("tree", "Tree"), ("yellow", "Yellow"),
    ],
    "singular⇒plural": [
        ("album", "albums"), ("car", "cars"), ("college", "colleges"), ("customer", "customers"), ("day", "days"),
        ("event", "events"), ("example", "examples"), ("friend", "friends"), ("hour", "hours"), ("idea", "ideas"),
        ("law", "laws"), ("member", "members"), ("month", "months"), ("night", "nights"), ("player", "players"),
        ("problem", "problems"), ("road", "roads"), ("song", "songs"), ("student", "students"), ("system", "systems"),
        ("city", "cities"), ("country", "countries"), ("family", "families"), ("story", "stories"),
        ("child", "children"), ("king", "kings"),
    ],
    "verb⇒past": [
        ("accept", "accepted"), ("achieve", "achieved"), ("add", "added"), ("agree", "agreed"), ("allow", "allowed"),
        ("appear", "appeared"), ("ask", "asked"), ("believe", "believed"), ("consider", "considered"),
        ("create", "created"), ("decide", "decided"), ("develop", "developed"), ("enjoy", "enjoyed"),
        ("expect", "expected"), ("follow", "followed"), ("hear", "heard"), ("improve", "improved"),
        ("include", "included"), ("lose", "lost"), ("provide", "provided"), ("receive", "received"),
        ("remain", "remained"), ("send", "sent"), ("tell", "told"), ("understand", "understood"),
    ],
    "adjective⇒comparative": [
        ("bad", "worse"), ("big", "bigger"), ("cheap", "cheaper"), ("cold", "colder"), ("dark", "darker"),
        ("deep", "deeper"), ("easy", "easier"), ("fast", "faster"), ("good", "better"), ("hard", "harder"),
        ("high", "higher"), ("hot", "hotter"), ("long", "longer"), ("low", "lower"), ("old", "older"),
        ("rich", "richer"), ("short", "shorter"), ("slow", "slower"), ("small", "smaller"), ("strong", "stronger"),
        ("tall", "taller"), ("weak", "weaker"), ("wide", "wider"), ("young", "younger"),
    ],
    "country⇒capital": [
        ("Austria", "Vienna"), ("Belgium", "Brussels"), ("Canada", "Ottawa"), ("China", "Beijing"), ("Cuba", "Havana"),
        ("Denmark", "Copenhagen"), ("Egypt", "Cairo"), ("Finland", "Helsinki"), ("France", "Paris"),
        ("Germany", "Berlin"), ("Greece", "Athens"), ("Hungary", "Budapest"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
        ("Ireland", "Dublin"), ("Italy", "Rome"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Norway", "Oslo"),
        ("Peru", "Lima"), ("Poland", "Warsaw"), ("Portugal", "Lisbon"), ("Russia", "Moscow"), ("Spain", "Madrid"),
        ("Sweden", "Stockholm"),
    ],
    "verb⇒3rd person": [
        ("accept", "accepts"), ("achieve", "achieves"), ("add", "adds"), ("agree", "agrees"), ("allow", "allows"),
        ("appear", "appears"), ("ask", "asks"), ("believe", "believes"), ("consider", "considers"),
        ("create", "creates"), ("develop", "develops"), ("enjoy", "enjoys"), ("follow", "follows"), ("hear", "hears"),
        ("improve", "improves"), ("include", "includes"), ("provide", "provides"), ("receive", "receives"),
        ("remain", "remains"), ("send", "sends"), ("tell", "tells"), ("understand", "understands"),
    ],
}  # fmt: skip
CONTROL = ("verb⇒past", "verb⇒3rd person")  # the one pair of concepts that is NOT causally separable
MIN_PAIRS = 12

# Steering: prompts whose next word is likely " king", all 8 tokens long (with BOS) so they batch
# without padding. We read the log-odds of queen (male⇒female), King (lower⇒upper) and kings
# (singular⇒plural) against king at the last position.
STEER_PROMPTS = [
    "The prince will one day become the",
    "The knights swore loyalty to their",
    "The people bowed to the new",
    "The kingdom was ruled by a wise",
]
STEER_BASE = "king"
STEER_TARGETS = {"male⇒female": "queen", "lower⇒upper": "King", "singular⇒plural": "kings"}

# What the paper reports (LLaMA-2-7B), printed beside our numbers.
PAPER = {
    "heatmap": "causally separable concepts are nearly orthogonal under the causal inner product "
    "(the paper also shows the Euclidean and a random inner product for comparison)",
    "steering": "adding the male⇒female embedding direction raises log P(queen)/P(king) while log P(King)/P(king) stays put",
}


def single_token(model: HookedTransformer, word: str) -> int | None:
    """The id of " word" if it is a single token of the model's tokenizer, else None."""
    ids = model.tokenizer.encode(" " + word, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def concept_pairs(
    model: HookedTransformer, concepts: dict[str, list[tuple[str, str]]] = CONCEPTS, verbose: bool = False
) -> dict[str, Int[Tensor, "pairs 2"]]:
    """Each concept's word pairs as token ids [pairs, 2] (y0, y1), keeping single-token words only."""
    out = {}
    for name, words in concepts.items():
        ids = [(single_token(model, a), single_token(model, b)) for a, b in words]
        kept = [pair for pair in ids if None not in pair and pair[0] != pair[1]]
        dropped = [w for w, pair in zip(words, ids) if pair not in kept]
        if verbose and dropped:
            print(f"{name}: dropped {dropped} (not single tokens)")
        if len(kept) < MIN_PAIRS:
            raise ValueError(f"{name}: only {len(kept)} single-token pairs (need {MIN_PAIRS})")
        out[name] = torch.tensor(kept)
    return out


def unembeddings(model: HookedTransformer) -> Float[Tensor, "d_vocab d_model"]:
    """γ: one unembedding vector per token (the rows of W_Uᵀ; a view, no copy)."""
    return model.W_U.detach().T


def causal_coordinates(
    gamma: Float[Tensor, "d_vocab d_model"], A: Float[Tensor, "d_model d_model"], mean: Float[Tensor, " d_model"]
) -> Float[Tensor, "d_vocab d_model"]:
    """g(y) = A (γ(y) - mean) for every token: computed in float64 in chunks, returned as float32.

    Chunks keep the peak memory low (the whole vocabulary in float64 is 0.23 GB per copy); float32
    is plenty for whitened coordinates, which are of order 1.
    """
    chunks = [((chunk.double() - mean) @ A.T).float() for chunk in gamma.split(8192)]
    return torch.cat(chunks)


def tied_embedding_scale(model: HookedTransformer) -> tuple[Float[Tensor, " d_model"], float]:
    """Is W_U = diag(w) W_Eᵀ? The least-squares per-dimension scale w and the relative residual.

    SmolLM2 ties its embeddings (W_U = W_Eᵀ) and TransformerLens folds the final RMSNorm's scale w
    into W_U, so the residual should be at float32 rounding level. Chunked over the vocabulary.
    """
    W_E, W_U = model.W_E.detach(), model.W_U.detach()
    dot, norm = torch.zeros(model.cfg.d_model), torch.zeros(model.cfg.d_model)
    for e, u in zip(W_E.split(8192), W_U.T.split(8192)):
        dot += (u * e).sum(0)
        norm += (e * e).sum(0)
    scale = dot / norm
    residual = sum(((u - e * scale) ** 2).sum() for e, u in zip(W_E.split(8192), W_U.T.split(8192)))
    return scale, (residual.sqrt() / W_U.norm()).item()


def without_tokens(pairs: Int[Tensor, "pairs 2"], tokens: list[int]) -> Int[Tensor, "kept 2"]:
    """The pairs that use none of ``tokens`` (to estimate a direction without the words we test on)."""
    keep = ~torch.isin(pairs, torch.tensor(tokens)).any(-1)
    return pairs[keep]


# ---------------------------------------------------------------------------------------------
# Helpers for the demos


def probe_accuracy(scores: Float[Tensor, "pairs 2"]) -> float:
    """Fraction of held-out words on the right side of the threshold: y0 below (score < 0), y1 above."""
    return ((scores[:, 0] < 0).float().mean().item() + (scores[:, 1] > 0).float().mean().item()) / 2


def separable_mask(names: list[str]) -> Tensor:
    """[k, k] True for the pairs of distinct concepts assumed causally separable (all but CONTROL)."""
    mask = ~torch.eye(len(names), dtype=torch.bool)
    if all(c in names for c in CONTROL):
        i, j = (names.index(c) for c in CONTROL)
        mask[i, j] = mask[j, i] = False
    return mask


def mean_abs_off_diagonal(matrix: Float[Tensor, "k k"], mask: Tensor) -> float:
    """Mean |entry| over the masked entries (the separable pairs of concepts)."""
    return matrix[mask].abs().mean().item()


def log_odds(logits: Float[Tensor, "batch d_vocab"], target: int, base: int) -> Float[Tensor, " batch"]:
    """log P(target) / P(base) at each prompt's last position (= the logit difference)."""
    return logits[:, target] - logits[:, base]


def plot_heatmaps(euclidean: Tensor, causal: Tensor, names: list[str]) -> None:
    """The paper's heatmap: cosines between concept directions, Euclidean vs causal inner product."""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.6), gridspec_kw={"wspace": 0.08})
    panels = [(euclidean, "Euclidean: ⟨γ̄_W, γ̄_Z⟩ / norms"), (causal, "causal: ⟨γ̄_W, γ̄_Z⟩_C / norms")]
    for ax, (matrix, title) in zip(axes, panels):
        image = ax.imshow(matrix.float().numpy(), cmap="PiYG", vmin=-1, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [], fontsize=8)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
        ax.set_title(title)
    fig.colorbar(image, ax=axes, shrink=0.8, label="cosine")


def plot_probe(scores: dict[str, Tensor], accuracies: dict[str, float]) -> None:
    """Held-out words projected on the leave-one-out direction (minus the threshold), per concept."""
    fig, axes = plt.subplots(2, (len(scores) + 1) // 2, figsize=(13, 5.2))
    for ax, (name, s) in zip(axes.flat, scores.items()):
        bins = torch.linspace(s.min().item(), s.max().item(), 16).numpy()
        ax.hist(s[:, 0].numpy(), bins=bins, alpha=0.6, label="y0 (base word)")
        ax.hist(s[:, 1].numpy(), bins=bins, alpha=0.6, label="y1 (target word)")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{name}\naccuracy {accuracies[name]:.2f}", fontsize=9)
        ax.set_yticks([])
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("held-out word's projection on the leave-one-out direction, minus the threshold (causal space)")
    plt.tight_layout()


def plot_steering(alphas: Tensor, curves: dict[str, dict[str, Tensor]]) -> None:
    """One panel per steering direction: change of each log-odds (vs king) against alpha."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8), sharey=True)
    for ax, (direction, lines) in zip(axes, curves.items()):
        for label, values in lines.items():
            ax.plot(alphas.numpy(), values.numpy(), marker="o", label=label)
        ax.axhline(0, color="black", lw=0.5)
        ax.set(title=f"adding α · {direction}", xlabel="α")
    axes[0].set_ylabel("change of log-odds vs ' king'\n(mean over prompts)")
    axes[-1].legend(fontsize=8)
    plt.tight_layout()


# ---------------------------------------------------------------------------------------------
# Checks: the cases every learner's function is run on


def _model() -> HookedTransformer:
    return load_model(verbose=False)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _correlated_unembedding(seed: int, d: int, vocab: int) -> Tensor:
    """A small W_U [d, vocab] with a non-zero mean and correlated, unequal directions."""
    g = _generator(seed)
    mix = torch.randn(d, d, generator=g) * torch.linspace(0.2, 2.0, d)
    return mix @ torch.randn(d, vocab, generator=g) + torch.randn(d, 1, generator=g)


@functools.cache
def _real_slice(dims: int, tokens: int) -> Tensor:
    return _model().W_U.detach()[:dims, :tokens].clone()


def _planted(seed: int, vocab: int, d: int, n_pairs: int) -> tuple[Tensor, Tensor]:
    """g [vocab, d] float64 whose pairs differ along one planted direction (plus noise)."""
    g = _generator(seed)
    emb = torch.randn(vocab, d, generator=g, dtype=torch.float64)
    tokens = torch.randperm(vocab, generator=g)[: 2 * n_pairs]
    pairs = tokens.reshape(n_pairs, 2)
    planted = torch.randn(d, generator=g, dtype=torch.float64)
    emb[pairs[:, 1]] = emb[pairs[:, 0]] + 0.6 * planted + 0.8 * torch.randn(n_pairs, d, generator=g, dtype=torch.float64)
    return emb, pairs


def _spd(seed: int, d: int) -> Tensor:
    m = torch.randn(d, d, generator=_generator(seed), dtype=torch.float64)
    return m @ m.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def _directions(seed: int, k: int, d: int) -> Tensor:
    x = torch.randn(k, d, generator=_generator(seed), dtype=torch.float64) + 0.5  # correlated, not unit
    return x


@functools.cache
def _steer_tokens() -> Tensor:
    return _model().to_tokens(STEER_PROMPTS[:2])


def _steer_direction(seed: int) -> Tensor:
    return torch.randn(_model().cfg.d_model, generator=_generator(seed)) * 0.3  # norm ≈ 7, like the demo's


EXERCISES = [
    Exercise(
        function="causal_transform",
        points=2,
        cases=lambda: [
            Case((_correlated_unembedding(0, 5, 400),), "a random W_U: 5 dims, 400 tokens"),
            Case((_real_slice(48, 6000),), "SmolLM2's W_U, first 48 dims x first 6000 tokens"),
            Case((_correlated_unembedding(1, 8, 150),), "a random W_U: 8 dims, 150 tokens", hidden=True),
        ],
        reference=ref.causal_transform,
        atol=1e-6,
        rtol=1e-5,
        hints=(
            "Whitening needs two statistics of the unembedding vectors over the vocabulary: their mean and their "
            "covariance around that mean. Work in float64 from the start: A divides by the roots of tiny eigenvalues.",
            "W_U's columns are the tokens: average over dim=1, and put one token per row (W_U.T) before you centre; "
            "the covariance is then [d_model, d_model], divided by the number of tokens (not one less).",
            "torch.linalg.eigh gives the eigenvalues and the eigenvectors Q (as columns); the symmetric inverse "
            "square root keeps Q on both sides and changes only the eigenvalues (not a Cholesky factor, not the inverse).",
        ),
        difficulty=3,
        importance=5,
        minutes=15,
    ),
    Exercise(
        function="concept_direction",
        points=1,
        cases=lambda: [
            Case(_planted(0, 60, 7, 9), "random g (60 tokens, 7 dims), 9 pairs"),
            Case(_planted(1, 30, 5, 4), "random g (30 tokens, 5 dims), 4 pairs"),
        ],
        reference=ref.concept_direction,
        atol=1e-8,
        rtol=1e-6,
        hints=(
            "A concept is what changes from the base word to the target: look at one difference vector per pair, "
            "target minus base.",
            "g[pairs[:, 0]] gives all the base words' rows at once (and column 1 the targets); average the differences "
            "over the pairs.",
            "Only the average gets unit length: scaling each difference first would give every pair the same weight "
            "and a different direction.",
        ),
        difficulty=1,
        importance=4,
        minutes=5,
    ),
    Exercise(
        function="inner_products",
        points=2,
        cases=lambda: [
            Case((_directions(0, 4, 6),), "4 directions in 6 dims, Euclidean (A=None)"),
            Case((_directions(1, 4, 6), _spd(2, 6)), "4 directions in 6 dims, causal (a random symmetric A)"),
            Case((_directions(3, 5, 3), _spd(4, 3)), "5 directions in 3 dims, causal", hidden=True),
        ],
        reference=ref.inner_products,
        atol=1e-8,
        rtol=1e-6,
        hints=(
            "Under ⟨x, y⟩ = (Ax)ᵀ(Ay) the cosine of x and y is the ordinary cosine of Ax and Ay: change the vectors "
            "first, and everything after that is Euclidean.",
            "The directions are rows, so mapping every row x to Ax is one matrix product (mind the transpose); "
            "skip it when A is None.",
            "Normalise after the map (a unit vector need not stay unit under A); then one product of the unit rows "
            "with their transpose gives all k × k cosines.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="probe_scores",
        points=2,
        cases=lambda: [
            Case(_planted(2, 80, 6, 10), "random g (80 tokens, 6 dims), 10 pairs"),
            Case(_planted(3, 40, 4, 5), "random g (40 tokens, 4 dims), 5 pairs"),
        ],
        reference=ref.probe_scores,
        atol=1e-8,
        rtol=1e-6,
        hints=(
            "Each pair i gets its own direction and its own threshold, both estimated from the other n - 1 pairs: "
            "pair i itself must play no part in either.",
            "For pair i, drop its row with a mask such as torch.arange(n) != i, and compute the unit mean difference "
            "of what is left, as in concept_direction.",
            "The threshold is one number per i, the mean projection of all the other pairs' words (bases and targets "
            "together); pair i's two scores are its two projections minus it.",
        ),
        difficulty=3,
        importance=3,
        minutes=20,
    ),
    Exercise(
        function="steer",
        points=3,
        cases=lambda: [
            Case((_model(), _steer_tokens(), _steer_direction(0), 2.0), "2 prompts, a random direction, alpha 2"),
            Case((_model(), _steer_tokens(), _steer_direction(1), -1.5), "2 prompts, another direction, alpha -1.5", hidden=True),
        ],
        reference=ref.steer,
        atol=1e-3,
        rtol=1e-4,
        hints=(
            "A hook function receives the activation and returns what the rest of the model sees: edit it and return "
            f"it. Use the hook {STEER_HOOK!r}, after the final norm, where the logits are linear in what you add.",
            "The activation is [batch, pos, d_model]: change only the last position, and add the direction as given, "
            "scaled by alpha (do not normalise it).",
            "run_with_hooks returns the logits of every position, [batch, pos, d_vocab]; the check wants only the last "
            "position's.",
        ),
        difficulty=2,
        importance=5,
        minutes=15,
    ),
]

check = Checks(EXERCISES)
