"""Chapter 00 — a TransformerLens warm-up on the bundled SmolLM2-135M: its data and its checks.

The learner writes each function in the notebook; `check.<name>(fn)` compares it with the reference
(`utils/references/chapter00.py`) on the fixed cases below.
"""

from __future__ import annotations

import functools

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

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
