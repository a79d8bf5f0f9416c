"""Chapter 03 — the indirect-object-identification (IOI) circuit: data, a demo helper and checks.

Wang et al. 2022, "Interpretability in the Wild" (https://arxiv.org/abs/2211.00593), found in GPT-2
small the circuit that completes "When Mary and John went to the store, John gave a drink to" with
" Mary". This module holds the chapter's data (templates, names, the clean ABBA/BABA and corrupted
ABC datasets), head patching by position (a demo) and the checks; the reference implementations are
in `utils/references/chapter03.py`. A dataset is a dict of tensors (see `ioi_dataset`); every prompt
of one dataset has the same token length and the names sit at the same positions, so "position 10"
means the same word in every prompt.
"""

from __future__ import annotations

import functools
import random

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from utils.data import repeated_random_tokens
from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise
from utils.models import load_model
from utils.patching import final_logits
from utils.references import chapter03 as ref
from utils.references.chapter00 import single_token_names

# ---------------------------------------------------------------------------------------------
# Data

# The paper's numbers for GPT-2 small (Wang et al. 2022), printed beside ours.
PAPER = {
    "logit_diff": 3.56,
    "accuracy": 0.993,
    "faithfulness": 0.87,
    "heads": {
        "name mover": [(9, 9), (9, 6), (10, 0)],
        "negative name mover": [(10, 7), (11, 10)],
        "S-inhibition": [(7, 3), (7, 9), (8, 6), (8, 10)],
        "induction": [(5, 5), (5, 8), (5, 9), (6, 9)],
        "duplicate token": [(0, 1), (0, 10), (3, 0)],
        "previous token": [(2, 2), (4, 11)],
        "backup name mover": [(9, 0), (9, 7), (10, 1), (10, 2), (10, 6), (10, 10), (11, 2), (11, 9)],
    },
}

# [A] and [B] are the two names of the first clause, [S] the subject of the second. Every template
# has the same shape (names at the same token positions), so one dataset has a single length.
TEMPLATES = [
    "When [A] and [B] went to the store, [S] gave a drink to",
    "When [A] and [B] went to the park, [S] gave a ball to",
    "When [A] and [B] went to the office, [S] gave a letter to",
    "When [A] and [B] went to the school, [S] gave a book to",
    "After [A] and [B] went to the beach, [S] gave a towel to",
    "While [A] and [B] were at the house, [S] gave a key to",
    "When [A] and [B] arrived at the hospital, [S] gave a flower to",
    "When [A] and [B] went to the restaurant, [S] gave a plate to",
]
NAMES = [
    "Mary", "John", "Alice", "Bob", "Sarah", "Tom", "Anna", "James", "Kate", "David", "Emma", "Paul",
    "Lisa", "Mark", "Laura", "Peter", "Jessica", "Michael", "Daniel", "Sophie", "Jack", "Rachel",
    "Chris", "Ben", "Amy", "Steve", "Lucy", "Ryan", "Sam", "Dan",
]  # fmt: skip


def ioi_dataset(
    model: HookedTransformer,
    n_prompts: int,
    seed: int = 0,
    templates: list[str] = TEMPLATES,
    names: list[str] = NAMES,
    make_pair=ref.ioi_prompt_pair,
) -> dict[str, Tensor]:
    """A clean IOI dataset and its ABC corruption, as tensors.

    Prompt i uses template ``i // 2 % len(templates)`` and order ABBA for even i, BABA for odd i, so
    any even ``n_prompts`` is balanced. Names are three distinct single-token names (for this
    model's tokenizer) drawn with ``random.Random(seed)``. ``make_pair`` builds the two prompts
    (the notebook passes the learner's ``ioi_prompt_pair``).

    Returns ``clean``/``corrupt`` tokens [batch, pos]; ``io``, ``s``, ``c`` token ids [batch]; the
    positions ``io_pos``, ``s1_pos``, ``s2_pos``, ``end`` [batch]; ``abba`` [batch] bool.
    """
    names = single_token_names(model, names)
    rng = random.Random(seed)
    clean, corrupt, io, s, c, abba = [], [], [], [], [], []
    for i in range(n_prompts):
        order = "ABBA" if i % 2 == 0 else "BABA"
        io_name, s_name, c_name = rng.sample(names, 3)
        pair = make_pair(templates[i // 2 % len(templates)], io_name, s_name, c_name, order)
        clean.append(pair[0])
        corrupt.append(pair[1])
        io.append(model.to_single_token(" " + io_name))
        s.append(model.to_single_token(" " + s_name))
        c.append(model.to_single_token(" " + c_name))
        abba.append(order == "ABBA")
    lengths = {len(model.to_tokens(p)[0]) for p in clean + corrupt}
    if len(lengths) != 1:
        raise ValueError(f"The templates give prompts of different token lengths {sorted(lengths)} for this tokenizer")
    data = {
        "clean": model.to_tokens(clean),
        "corrupt": model.to_tokens(corrupt),
        "io": torch.tensor(io),
        "s": torch.tensor(s),
        "c": torch.tensor(c),
        "abba": torch.tensor(abba),
    }
    # Positions, read off the tokens (the same in every prompt, by construction of the templates).
    clean_tokens = data["clean"]
    data["io_pos"] = (clean_tokens == data["io"][:, None]).int().argmax(1)
    first_s = (clean_tokens == data["s"][:, None]).int()
    data["s1_pos"] = first_s.argmax(1)
    data["s2_pos"] = clean_tokens.shape[1] - 1 - first_s.flip(1).argmax(1)
    data["end"] = torch.full((n_prompts,), clean_tokens.shape[1] - 1)
    for key in ("io_pos", "s1_pos", "s2_pos"):
        if len(set(data[key].tolist())) > 2:
            raise ValueError(f"names are not at fixed positions ({key}: {sorted(set(data[key].tolist()))})")
    return data


# ---------------------------------------------------------------------------------------------
# Head patching by position (a demo, not an exercise)


def patch_z(
    model: HookedTransformer,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    io_tokens: Int[Tensor, " batch"],
    s_tokens: Int[Tensor, " batch"],
    rows: list[tuple[int, list[tuple[int | slice, int]]]],
    n_copies: int,
) -> Float[Tensor, "rows copies"]:
    """Batched activation patching of ``hook_z``, normalised: 0 = corrupted, 1 = clean.

    Each row is ``(layer, patches)``: one run of ``n_copies`` (= ``len(patches)``) stacked copies of
    the corrupted batch, starting at ``layer``, where copy ``c`` gets the clean ``hook_z[:, pos, head]`` for
    ``patches[c] = (pos, head)`` (``pos`` may be ``slice(None)``: every position).
    """
    want = ("hook_z", "resid_pre")
    clean_logits, clean_cache = model.run_with_cache(clean, names_filter=lambda name: name.endswith(want))
    corrupt_logits, corrupt_cache = model.run_with_cache(corrupt, names_filter=lambda name: name.endswith(want))
    ld_clean = ref.logit_diff(clean_logits, io_tokens, s_tokens).mean()
    ld_corrupt = ref.logit_diff(corrupt_logits, io_tokens, s_tokens).mean()
    out = torch.zeros(len(rows), n_copies)
    for row, (layer, patches) in enumerate(rows):

        def patch(z: Tensor, hook, layer: int = layer, patches: list = patches) -> Tensor:
            z = einops.rearrange(z, "(n batch) pos head d -> n batch pos head d", n=n_copies).clone()
            for copy, (pos, head) in enumerate(patches):
                z[copy, :, pos, head] = clean_cache["z", layer][:, pos, head]
            return einops.rearrange(z, "n batch pos head d -> (n batch) pos head d")

        resid = corrupt_cache["resid_pre", layer].repeat(n_copies, 1, 1)
        with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)]):
            logits = final_logits(model, resid, start_at_layer=layer)
        ld = ref.logit_diff(logits, io_tokens.repeat(n_copies), s_tokens.repeat(n_copies))
        out[row] = einops.rearrange(ld, "(n batch) -> n batch", n=n_copies).mean(-1)
    return (out - ld_corrupt) / (ld_clean - ld_corrupt)


def patch_head_positions(
    model: HookedTransformer,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    io_tokens: Int[Tensor, " batch"],
    s_tokens: Int[Tensor, " batch"],
    heads: list[tuple[int, int]],
) -> Float[Tensor, "heads pos"]:
    """Activation patching of each head's output at one position at a time (a demo, not an exercise).

    For head (layer, h) and position p, the corrupted run gets the clean ``hook_z[:, p, h]``; all
    positions of one head run as one batch, starting at that head's layer. Normalised like
    the `patch_heads` exercise: 0 = corrupted, 1 = clean.
    """
    n_pos = clean.shape[1]
    rows = [(layer, [(pos, head) for pos in range(n_pos)]) for layer, head in heads]  # one copy per position
    return patch_z(model, clean, corrupt, io_tokens, s_tokens, rows, n_pos)


# ---------------------------------------------------------------------------------------------
# Checks: the cases every learner's function is run on


def _model() -> HookedTransformer:
    return load_model(verbose=False)


@functools.cache
def _data(n_prompts: int, seed: int) -> dict[str, Tensor]:
    return ioi_dataset(_model(), n_prompts, seed)


def _args(n_prompts: int, seed: int, *extra) -> tuple:
    data = _data(n_prompts, seed)
    return (_model(), data["clean"], data["corrupt"], data["io"], data["s"], *extra)


@functools.cache
def _logits(n_prompts: int, seed: int, which: str = "clean") -> Tensor:
    data = _data(n_prompts, seed)
    with torch.no_grad():
        return _model()(data[which])


def _random_logits(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 7, 50, generator=g), torch.randint(0, 50, (5,), generator=g), torch.randint(0, 50, (5,), generator=g)


@functools.cache
def _rep_patterns(seq_len: int, batch: int) -> Tensor:
    model = _model()
    tokens = repeated_random_tokens(model, seq_len, batch)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    return torch.stack([cache["pattern", layer].mean(0) for layer in range(model.cfg.n_layers)])


def _random_patterns(seed: int, layers: int = 2, heads: int = 3, pos: int = 11) -> Tensor:
    scores = torch.randn(layers, heads, pos, pos, generator=torch.Generator().manual_seed(seed))
    return scores.masked_fill(torch.triu(torch.ones(pos, pos, dtype=torch.bool), 1), float("-inf")).softmax(-1)


def _name_tokens(names: list[str]) -> Tensor:
    model = _model()
    return torch.tensor([model.to_single_token(" " + n) for n in single_token_names(model, names)])


def _circuit(kind: str) -> Tensor:
    model = _model()
    mask = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
    if kind == "late":
        mask[20:] = True
    elif kind == "random":
        mask.view(-1)[torch.randperm(mask.numel(), generator=torch.Generator().manual_seed(0))[:40]] = True
    return mask


EXERCISES = [
    Exercise(
        function="ioi_prompt_pair",
        points=1,
        cases=lambda: [
            Case((TEMPLATES[0], "Mary", "John", "Tom", "ABBA"), "ABBA, the store template"),
            Case((TEMPLATES[5], "Alice", "Bob", "Kate", "BABA"), "BABA, the house template"),
            Case(("Then [B] met [A], and [S] smiled at", "Ann", "Dan", "Lee", "BABA"), "another template", hidden=True),
        ],
        reference=ref.ioi_prompt_pair,
        hints=("ABBA: [A]=IO, [B]=S; BABA: [A]=S, [B]=IO; [S] is S in the clean prompt and the third name in the corrupted one",),
    ),
    Exercise(
        function="logit_diff",
        points=1,
        cases=lambda: [
            Case(_random_logits(0), "random logits, 5 prompts of 7 positions"),
            Case((_logits(6, 1), _data(6, 1)["io"], _data(6, 1)["s"]), "SmolLM2 on 6 IOI prompts"),
            Case((_logits(6, 1, "corrupt"), _data(6, 1)["io"], _data(6, 1)["s"]), "SmolLM2 on their ABC corruption", hidden=True),
        ],
        reference=ref.logit_diff,
        atol=1e-4,
        hints=("logit of IO minus logit of S, at the last position, one value per prompt",),
    ),
    Exercise(
        function="logit_diff_directions",
        points=1,
        cases=lambda: [
            Case((_model(), _data(6, 1)["io"], _data(6, 1)["s"]), "6 IOI prompts"),
            Case((_model(), torch.tensor([5, 17]), torch.tensor([17, 5])), "two swapped pairs"),
        ],
        reference=ref.logit_diff_directions,
        atol=1e-5,
        hints=("columns of model.W_U: W_U[:, io] - W_U[:, s], one row per prompt",),
    ),
    Exercise(
        function="component_dla",
        points=1,
        cases=lambda: [
            Case(_args(4, 2)[:2] + (_data(4, 2)["io"], _data(4, 2)["s"]), "4 clean prompts"),
            Case(_args(4, 3)[:1] + (_data(4, 3)["corrupt"], _data(4, 3)["io"], _data(4, 3)["s"]), "4 corrupted prompts"),
        ],
        reference=ref.component_dla,
        atol=2e-3,
        rtol=1e-3,
        hints=(
            "cache.decompose_resid(layer=-1, pos_slice=-1) in its order, scaled by the final norm's scale of the whole stream",
        ),
    ),
    Exercise(
        function="head_dla",
        points=2,
        cases=lambda: [
            Case(_args(4, 2)[:2] + (_data(4, 2)["io"], _data(4, 2)["s"]), "4 clean prompts"),
            Case(_args(2, 3)[:1] + (_data(2, 3)["corrupt"], _data(2, 3)["io"], _data(2, 3)["s"]), "2 corrupted prompts"),
        ],
        reference=ref.head_dla,
        atol=2e-3,
        rtol=1e-3,
        hints=("project each head's output at the last position on the logit-difference direction, after dividing by the "
        "final norm's scale of the whole residual stream (cache.apply_ln_to_stack), averaged over prompts",),
    ),
    Exercise(
        function="patch_residual",
        points=2,
        cases=lambda: [
            Case(_args(2, 4, [18, 28]), "2 prompts, layers 18 and 28"),
            Case(_args(2, 5, [24]), "2 other prompts, layer 24", hidden=True),
        ],
        reference=ref.patch_residual,
        atol=2e-3,
        rtol=1e-3,
        hints=("run the corrupted prompts with one (layer, position) of resid_pre taken from the clean run; "
        "(LD - LD_corrupt) / (LD_clean - LD_corrupt) with LD averaged over prompts",),
    ),
    Exercise(
        function="patch_heads",
        points=2,
        cases=lambda: [
            Case(_args(2, 4, [20, 23]), "2 prompts, layers 20 and 23"),
            Case(_args(2, 5, [25]), "2 other prompts, layer 25", hidden=True),
        ],
        reference=ref.patch_heads,
        atol=2e-3,
        rtol=1e-3,
        hints=("run the corrupted prompts with one head's hook_z (every position) taken from the clean run",),
    ),
    Exercise(
        function="attribution_patch",
        points=2,
        cases=lambda: [
            Case(_args(2, 4, "z"), "2 prompts, every head's z"),
            Case(_args(2, 4, "resid_pre"), "2 prompts, the residual stream"),
        ],
        reference=ref.attribution_patch,
        atol=2e-3,
        rtol=2e-3,
        hints=("(clean activation - corrupted activation) . d(mean LD)/d(activation) at the corrupted run, "
        "summed over prompts and the last axis, divided by (LD_clean - LD_corrupt)",),
    ),
    Exercise(
        function="path_patch_to_logits",
        points=2,
        cases=lambda: [
            Case(_args(4, 2), "4 prompts"),
            Case(_args(4, 6), "4 other prompts", hidden=True),
        ],
        reference=ref.path_patch_to_logits,
        atol=2e-3,
        rtol=1e-3,
        hints=("add (corrupted - clean) output of one head at the last position to the clean final residual stream, "
        "re-apply ln_final, and measure (LD - LD_clean) / (LD_clean - LD_corrupt)",),
    ),
    Exercise(
        function="path_patch_to_queries",
        points=3,
        cases=lambda: [
            Case(_args(2, 4, [(23, 3)]), "2 prompts, receiver 23.3"),
            Case(_args(2, 6, [(23, 0), (29, 1)]), "2 prompts, receivers 23.0 and 29.1"),
        ],
        reference=ref.path_patch_to_queries,
        atol=2e-3,
        rtol=1e-3,
        hints=("only the receivers' queries see the sender's change (their keys and values stay clean); read their "
        "output change at the last position straight into the clean final residual stream",),
    ),
    Exercise(
        function="copying_scores",
        points=2,
        cases=lambda: [
            Case((_model(), _name_tokens(NAMES[:4])), "4 names"),
            Case((_model(), _name_tokens(NAMES[4:8]), 5, True), "4 other names, negative copying"),
        ],
        reference=ref.copying_scores,
        atol=1e-6,
        hints=("names -> embedding + block 0's MLP -> ln1 -> each head's OV -> ln_final -> unembed; is the name in the top k?",),
    ),
    Exercise(
        function="duplicate_token_scores",
        points=1,
        cases=lambda: [
            Case((_random_patterns(0), 5), "random causal patterns, seq_len 5"),
            Case((_rep_patterns(10, 2), 10), "SmolLM2 on repeated random tokens, seq_len 10"),
        ],
        reference=ref.duplicate_token_scores,
        atol=1e-5,
        hints=("position T+i (the second r_i) attends to position i (the first r_i)",),
    ),
    Exercise(
        function="circuit_logit_diff",
        points=2,
        cases=lambda: [
            Case(_args(4, 2, _circuit("late")), "4 prompts, heads of layers 20-29 kept"),
            Case(_args(4, 3, _circuit("random")), "4 prompts, 40 random heads kept"),
        ],
        reference=ref.circuit_logit_diff,
        atol=2e-3,
        rtol=1e-3,
        hints=("replace every head outside the circuit by its mean hook_z over the corrupted prompts (per position)",),
    ),
]

check = Checks(EXERCISES)
