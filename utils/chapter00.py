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
        hints=("a name in the middle of a sentence is tokenized with the space before it",),
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
        hints=("n_layers + 1 rows: resid_pre of every layer, then the last layer's resid_post",),
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
        hints=("scale by sqrt(d_head), mask future keys, softmax over keys; query head h uses key head h // group",),
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
        hints=("apply the final norm (model.ln_final) before unembedding, and score the token at the next position",),
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
        hints=("in [BOS, r_1..r_T, r_1..r_T] the second r_i (position T+i) should attend to position i+1; "
        "average over the T positions of the second half",),
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
        hints=("zero one head's slice of blocks.{layer}.attn.hook_z with model.run_with_hooks(..., return_type='loss')",),
    ),
]

check = Checks(EXERCISES)
