"""Chapter 00 — a TransformerLens warm-up on the bundled SmolLM2-135M: its data and its checks.

The learner writes each function in the notebook; `check.<name>(fn)` compares it with the reference
(`utils/references/chapter00.py`) on the fixed cases below.
"""

from __future__ import annotations

import functools

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import FactoredMatrix, HookedTransformer

from utils.data import repeated_random_tokens
from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise
from utils.models import load_model
from utils.references import chapter00 as ref

# ---------------------------------------------------------------------------------------------
# Data

CANDIDATE_NAMES = ["Mary", "John", "Alice", "Bob", "Sarah", "Tom", "Anna", "James", "Ebenezer", "Xiomara", "Oluwaseun", "Kate"]
PROMPTS = [
    "When Mary and John went to the store, John gave a drink to",
    "The Eiffel Tower is located in the city of",
]
PASSAGE = (
    "The quick brown fox jumps over the lazy dog. A transformer reads a sequence of tokens and, at every "
    "position, predicts the next one. Each layer adds its output to the residual stream."
)


# ---------------------------------------------------------------------------------------------
# Checks: the cases every learner's function is run on


def _model() -> HookedTransformer:
    return load_model(verbose=False)


@functools.cache
def _patterns(seq_len: int, batch: int) -> Float[Tensor, "layer head q_pos k_pos"]:
    """Attention patterns of every head on repeated random tokens, averaged over the batch."""
    model = _model()
    tokens = repeated_random_tokens(model, seq_len, batch)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    return torch.stack([cache["pattern", layer].mean(0) for layer in range(model.cfg.n_layers)])


def _random_patterns(seed: int, layers: int = 2, heads: int = 3, pos: int = 9) -> Float[Tensor, "layer head q_pos k_pos"]:
    scores = torch.randn(layers, heads, pos, pos, generator=torch.Generator().manual_seed(seed))
    return scores.masked_fill(torch.triu(torch.ones(pos, pos, dtype=torch.bool), 1), float("-inf")).softmax(-1)


def _qk(prompt: str, layer: int) -> tuple[Tensor, Tensor]:
    model = _model()
    with torch.no_grad():
        _, cache = model.run_with_cache(prompt, names_filter=lambda name: "rot_" in name)
    return cache["rot_q", layer][0], cache["rot_k", layer][0]


def _random_qk(seed: int, pos: int, n_heads: int, n_kv_heads: int, d_head: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(pos, n_heads, d_head, generator=g), torch.randn(pos, n_kv_heads, d_head, generator=g)


def circuit_sample(d_vocab: int) -> tuple[Int[Tensor, " rows"], Int[Tensor, " cols"]]:
    """The (input, output) tokens at which the full OV circuit's check reads the circuit: 24 inputs, and as
    outputs the same 24 (the diagonal) and 8 others. Drawn afresh at every call, so nothing can change them."""
    g = torch.Generator().manual_seed(7)
    rows = torch.randint(0, d_vocab, (24,), generator=g)
    return rows, torch.cat([rows, torch.randint(0, d_vocab, (8,), generator=g)])


def circuit_probe(fn, model: HookedTransformer, layer: int, head: int) -> dict:
    """The probe of `full_ov_circuit`'s check: whether it returned a FactoredMatrix, its shape, and its
    entries at fixed (input, output) token pairs, computed from the factors (the d_vocab x d_vocab product
    is never formed)."""
    rows, cols = circuit_sample(model.cfg.d_vocab)
    circuit = fn(model, layer, head)
    factored = isinstance(circuit, FactoredMatrix)
    shape = [int(n) for n in circuit.shape] if factored else []
    entries = circuit.A[rows] @ circuit.B[:, cols] if shape == [model.cfg.d_vocab] * 2 else torch.zeros(0)
    return {"is a FactoredMatrix": factored, "shape": shape, "entries at sampled (input, output) tokens": entries}


class GuardedCircuit(FactoredMatrix):
    """A FactoredMatrix whose `.AB` refuses to form a huge product (a full OV circuit's is 9.7 GB)."""

    @property
    def AB(self) -> Tensor:
        if self.ldim * self.rdim > 10**8:
            gigabytes = 4 * self.ldim * self.rdim / 1e9
            raise MemoryError(
                f"circuit.AB would form the {self.ldim} x {self.rdim} product ({gigabytes:.1f} GB); use the factors"
            )
        return self.A @ self.B


def factored_probe(fn, A: Tensor, B: Tensor):
    """The probe of `copying_score`'s check: calls it on the FactoredMatrix A @ B (a FactoredMatrix
    can't travel to a grading kernel; its two factors can)."""
    return fn(GuardedCircuit(A, B))


def _random_circuit(seed: int, n: int, rank: int, sign: float = 0.0) -> tuple[Tensor, Tensor]:
    """Factors of an n x n matrix of the given rank: random (sign 0), or mostly copying (sign +1) or
    anti-copying (sign -1): sign * A diag(s) A^T plus as much random noise (scores near +-0.7)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, rank, generator=g) / rank**0.5
    B = torch.randn(rank, n, generator=g) / n**0.5
    if sign:
        B = sign * (torch.rand(rank, 1, generator=g) + 0.5) * A.T * (rank / n) ** 0.5 * 0.15 + B
    return A, B


@functools.cache
def _full_ov_factors(layer: int, head: int) -> tuple[Tensor, Tensor]:
    model = _model()
    with torch.no_grad():
        return model.W_E @ model.W_V[layer, head], model.W_O[layer, head] @ model.W_U


@functools.cache
def _mean_resid(layer: int) -> Float[Tensor, " d_model"]:
    """The residual stream entering `layer`, averaged over the passage's positions (the first, the
    attention sink, left out)."""
    with torch.no_grad():
        _, cache = _model().run_with_cache(PASSAGE, names_filter=f"blocks.{layer}.hook_resid_pre")
    return cache["resid_pre", layer][0, 1:].mean(0)


def _random_resid(seed: int) -> Float[Tensor, " d_model"]:
    return torch.randn(576, generator=torch.Generator().manual_seed(seed)) * 3


def _tokens(text: str | list[str]) -> Int[Tensor, "batch pos"]:
    return _model().to_tokens(text)


EXERCISES = [
    Exercise(
        function="single_token_names",
        points=1,
        cases=lambda: [
            Case((_model(), CANDIDATE_NAMES), "the candidate names"),
            Case((_model(), ["Grace", "Maximilian", "Lee", "Zbigniew", "Paul"]), "other names"),
            Case((_model(), ["Ann", "Rosalind", "Dan"]), "hidden names", hidden=True),
        ],
        reference=ref.single_token_names,
        hints=(
            "Think about how the name appears in a sentence: with the space before it, and the tokenizer treats "
            "\" Mary\" and \"Mary\" as different strings.",
            "Tokenize each name in that form and count its tokens; watch out for what `to_tokens` adds at the start "
            "unless you tell it not to.",
            "`model.to_tokens(text, prepend_bos=False)` has shape [1, n_tokens]: look at its second dimension, and keep "
            "the names in the order given.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
    Exercise(
        function="residual_norms",
        points=1,
        cases=lambda: [
            Case((_model(), _tokens(PROMPTS[0])), f"tokens of {PROMPTS[0]!r}"),
            Case((_model(), _tokens(PROMPTS)), "a batch of two prompts (padded)"),
        ],
        reference=ref.residual_norms,
        atol=1e-2,
        rtol=1e-3,
        hints=(
            "You need n_layers + 1 snapshots of the residual stream: what enters each block, and what leaves the last "
            "one.",
            "In the cache these are `cache[\"resid_pre\", layer]` for every layer plus one `resid_post`; stack them into "
            "[n_layers + 1, batch, pos, d_model].",
            "Take the norm over d_model and then the mean over the batch axis; padded positions count like any other "
            "(no masking).",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="attention_pattern",
        points=2,
        cases=lambda: [
            Case(_random_qk(0, pos=5, n_heads=4, n_kv_heads=2, d_head=8), "random q, k: 4 query heads, 2 key/value heads"),
            Case(_qk(PROMPTS[0], 0), "layer 0 of SmolLM2 on the IOI prompt"),
            Case(_qk(PROMPTS[1], 18), "layer 18 of SmolLM2 on the Eiffel prompt"),
            Case(_random_qk(1, pos=7, n_heads=6, n_kv_heads=6, d_head=4), "random q, k: no grouping", hidden=True),
        ],
        reference=ref.attention_pattern,
        atol=1e-5,
        hints=(
            "Three steps, in the order of the formula: score every (query, key) pair, hide the future keys, normalise "
            "each query's scores over the keys.",
            "Before scoring, give k one head per query head: consecutive query heads share a key head, so each key "
            "head must be repeated in place (`repeat_interleave`), not the whole set tiled.",
            "Scale the scores before masking, and mask by setting the scores of keys after the query (a `torch.triu` "
            "mask above the diagonal) to -inf, so that the softmax gives them exactly 0.",
        ),
        difficulty=3,
        importance=4,
        minutes=15,
    ),
    Exercise(
        function="logit_lens",
        points=2,
        cases=lambda: [
            Case((_model(), _tokens(PROMPTS[1])), "the Eiffel prompt"),
            Case((_model(), _tokens(PASSAGE)), "a short passage"),
        ],
        reference=ref.logit_lens,
        atol=1e-3,
        rtol=1e-4,
        hints=(
            "At every layer boundary, do to the residual stream exactly what the model does to its final one, then ask "
            "how likely the true next token is.",
            "The model's read-out is `model.ln_final`, then `model.unembed`, then a log-softmax over the vocabulary; "
            "leaving out the norm or the log-softmax gives different numbers.",
            "Position p predicts token p + 1: drop the last position's prediction and the first token as a target, "
            "`gather` the targets' log-probs, and average over batch and positions.",
        ),
        difficulty=3,
        importance=4,
        minutes=15,
    ),
    Exercise(
        function="previous_token_scores",
        points=1,
        cases=lambda: [
            Case((_random_patterns(0),), "random causal patterns (2 layers, 3 heads, 9 positions)"),
            Case((_patterns(20, 2),), "SmolLM2 on repeated random tokens"),
        ],
        reference=ref.previous_token_scores,
        atol=1e-5,
        hints=(
            "In a [q_pos, k_pos] pattern, every entry \"query i attends to key i - 1\" lies on one diagonal of the "
            "matrix.",
            "`Tensor.diagonal(offset, dim1=-2, dim2=-1)` reads a diagonal of the last two axes: offset 0 is a token "
            "attending to itself, negative offsets lie below it (keys earlier than queries).",
            "That diagonal has one entry per query that has a previous token; average exactly those entries.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
    ),
    Exercise(
        function="induction_scores",
        points=2,
        cases=lambda: [
            Case((_random_patterns(1, pos=11), 5), "random causal patterns, seq_len 5"),
            Case((_patterns(20, 2), 20), "SmolLM2 on repeated random tokens, seq_len 20"),
            Case((_random_patterns(2, pos=7), 3), "random causal patterns, seq_len 3", hidden=True),
        ],
        reference=ref.induction_scores,
        atol=1e-5,
        hints=(
            "Write down the (query, key) pairs you want, query T + i and key i + 1, and work out query − key: is it "
            "the same for every i?",
            "So the pairs lie on one diagonal of the pattern; but that diagonal is longer than T and also starts at "
            "queries of the first copy.",
            "Keep only the diagonal's entries whose query is in the second copy (positions T + 1 … 2T), then average.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="full_ov_circuit",
        points=1,
        cases=lambda: [
            Case((_model(), 18, 6), "induction head 18.6"),
            Case((_model(), 2, 1), "head 2.1 (query head 1, which reads key/value head 0)"),
            Case((_model(), 29, 1), "head 29.1", hidden=True),
        ],
        reference=ref.full_ov_circuit,
        probe="utils.chapter00:circuit_probe",
        atol=1e-4,
        rtol=1e-3,
        hints=(
            "The circuit is the path of a token through the head and out to the logits: embed it, read it into a "
            "value, write the value out, unembed. Four matrices, in the order TransformerLens multiplies row vectors.",
            "`model.blocks[layer].attn.OV[head]` is that head's W_V W_O as a FactoredMatrix (its value weights already "
            "repeated for grouped-query attention); a tensor @ a FactoredMatrix stays a FactoredMatrix.",
            "Multiply `model.W_E` on the left and `model.W_U` on the right of it, and return the result as it is: "
            "no `.AB`, which would be 49152 x 49152 floats.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="copying_score",
        points=1,
        cases=lambda: [
            Case(_random_circuit(0, 300, 16), "a random 300 x 300 matrix of rank 16"),
            Case(_random_circuit(1, 300, 16, sign=1.0), "a mostly copying 300 x 300 matrix of rank 16"),
            Case(_random_circuit(2, 200, 12, sign=-1.0), "a mostly anti-copying 200 x 200 matrix of rank 12"),
            Case(_full_ov_factors(29, 1), "the full OV circuit of head 29.1 (49152 x 49152, given as its factors)"),
            Case(_random_circuit(3, 250, 20), "a random 250 x 250 matrix of rank 20", hidden=True),
        ],
        reference=ref.copying_score,
        probe="utils.chapter00:factored_probe",
        atol=1e-4,
        rtol=1e-3,
        hints=(
            "Eigenvalues are complex in general. The score compares their sum with the sum of their sizes: it is 1 "
            "only if every one of them is a positive real number.",
            "`circuit.eigenvalues` gives the eigenvalues of B @ A (mdim x mdim), which are the non-zero eigenvalues of "
            "A @ B, without forming the big product.",
            "The sum of the eigenvalues of a real matrix is real (it is the trace): take `.real` of the sum, divide by "
            "the sum of `.abs()`, and return `.item()`.",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="positional_scores",
        points=2,
        cases=lambda: [
            Case((_model(), 16, 0, _mean_resid(16), 8), "previous-token head 16.0, the mean residual of a passage"),
            Case((_model(), 2, 1, _mean_resid(2), 5), "head 2.1 (query head 1 of key head 0), mean residual"),
            Case((_model(), 11, 5, _random_resid(0), 12), "head 11.5 on a random residual vector, 12 offsets"),
            Case((_model(), 20, 7, _mean_resid(20), 6), "head 20.7, mean residual", hidden=True),
        ],
        reference=ref.positional_scores,
        atol=1e-3,
        rtol=1e-4,
        hints=(
            "Do to one vector what the layer does to every position: normalise it, project it to a query and to a key, "
            "rotate each by its position, dot them. Only the positions differ between the offsets.",
            "`model.blocks[layer].ln1` normalises; `attn.W_Q[head]` and `attn.W_K[head]` (already repeated for the "
            "shared key heads) project; `attn.apply_rotary` rotates a [batch, pos, head, d_head] tensor, position p by "
            "p's angles, so repeat the query and the key over max_offset + 1 positions first.",
            "Put the query at the last position, max_offset, and the keys at every position; dot, divide by "
            "`attn.attn_scale` (sqrt(d_head)), and order the result by offset: entry d is the key at max_offset - d.",
        ),
        difficulty=4,
        importance=3,
        minutes=20,
    ),
    Exercise(
        function="composition_scores",
        points=2,
        cases=lambda: [
            Case((_model(), 16, 0, 18, 6), "previous-token head 16.0 into induction head 18.6"),
            Case((_model(), 2, 1, 17, 3), "head 2.1 into head 17.3"),
            Case((_model(), 11, 1, 19, 8), "head 11.1 into head 19.8"),
            Case((_model(), 5, 5, 17, 8), "head 5.5 into head 17.8", hidden=True),
        ],
        reference=ref.composition_scores,
        atol=1e-5,
        rtol=1e-4,
        hints=(
            "Each score asks how much of what the earlier head writes lands where one of the later head's matrices "
            "reads: a norm of their product, divided by the product of their norms.",
            "The later head reads with its query side for Q (its QK circuit as it is), with its key side for K (the "
            "transpose, `.T`), with its values for V (its OV circuit); `attn.QK[head]` and `attn.OV[head]` are "
            "FactoredMatrix objects with `.norm()` (Frobenius) and `@`.",
            "TransformerLens puts the vector on the left (a row vector, x @ W), so the earlier head's W_OV comes first: "
            "`(ov1 @ w).norm() / (ov1.norm() * w.norm())`, as a float for each of \"Q\", \"K\" and \"V\".",
        ),
        difficulty=3,
        importance=4,
        minutes=15,
    ),
    Exercise(
        function="ablated_loss",
        points=1,
        cases=lambda: [
            Case((_model(), repeated_random_tokens(_model(), 15, 2), 18, 6), "induction head 18.6 on repeated tokens"),
            Case((_model(), _tokens(PASSAGE), 0, 3), "head 0.3 on a short passage"),
        ],
        reference=ref.ablated_loss,
        atol=1e-3,
        rtol=1e-4,
        hints=(
            "Leave the weights alone: change one activation during the forward pass with a hook, and let the model "
            "compute its own loss.",
            "A hook receives the activation and returns its replacement; at `blocks.{layer}.attn.hook_z` the shape is "
            "[batch, pos, head, d_head], so one head is one index of the third axis.",
            "`model.run_with_hooks(tokens, return_type=\"loss\", fwd_hooks=[(name, hook_fn)])` returns a 0-d tensor; "
            "`.item()` makes it a float.",
        ),
        difficulty=2,
        importance=5,
        minutes=10,
    ),
]

check = Checks(EXERCISES)
