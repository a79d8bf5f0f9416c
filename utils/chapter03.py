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
import matplotlib.pyplot as plt
import torch
from jaxtyping import Float, Int
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
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
# Diagrams (demos): path patching, and the circuit the notebook found

RED, GREY, GREEN, BLUE = "#d62728", "#9e9e9e", "#2ca02c", "#1f77b4"


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, colour: str, **kwargs) -> FancyBboxPatch:
    """A rounded box centred at (x, y) with its text; returns the patch (for arrows between boxes)."""
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                           facecolor=colour, edgecolor="black", alpha=0.9, linewidth=1, **kwargs)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=8, wrap=True)
    return patch


def _arrow(ax: Axes, start, end, label: str = "", dashed: bool = False, colour: str = "black", rad: float = 0.0,
           label_at: float = 0.5, offset: tuple[float, float] = (0, 0), patches: tuple = (None, None)) -> None:
    arrow = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=colour, linewidth=1.5,
                            linestyle="--" if dashed else "-", connectionstyle=f"arc3,rad={rad}",
                            patchA=patches[0], patchB=patches[1], shrinkA=2, shrinkB=2)
    ax.add_patch(arrow)
    if label:
        x = start[0] + label_at * (end[0] - start[0]) + offset[0]
        y = start[1] + label_at * (end[1] - start[1]) + offset[1]
        ax.text(x, y, label, ha="center", va="center", fontsize=7.5, color=colour,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1})


def draw_path_patching(receivers: list[tuple[int, int]], exercises: tuple[int, int, int, int]) -> Axes:
    """A diagram of path patching from a sender head to the receivers' queries: the two runs, what is
    frozen, what is recomputed, and which exercise computes each step (``exercises``: steps (a)-(d))."""
    a, b, c, d = exercises
    names = ", ".join(f"{layer}.{head}" for layer, head in receivers)
    _, ax = plt.subplots(figsize=(12, 5.2))
    ax.set(xlim=(0, 12), ylim=(0, 6.3))
    ax.set_title(f"Path patching: a sender -> the queries of {names} -> the logits (exercise numbers in brackets)", fontsize=10)
    ax.axis("off")
    # the two runs
    ax.add_patch(FancyBboxPatch((0.1, 4.75), 11.8, 1.35, boxstyle="round,pad=0.02", facecolor="#fde0dd", edgecolor="none"))
    ax.text(11.8, 5.85, "corrupted (ABC) run", fontsize=9, fontweight="bold", color=RED, ha="right")
    ax.add_patch(FancyBboxPatch((0.1, 0.15), 11.8, 4.35, boxstyle="round,pad=0.02", facecolor="#f0f0f0", edgecolor="none"))
    ax.text(11.8, 4.25, "clean run, at END (the last position)", fontsize=9, fontweight="bold", ha="right")
    # the residual stream at END, left to right
    _arrow(ax, (0.3, 2.0), (9.9, 2.0))
    ax.text(0.3, 2.15, "residual\nstream", fontsize=7.5, ha="left", va="bottom")
    _box(ax, 2.2, 5.35, 2.3, 0.75, "the sender (one head at a time):\nits output z @ W_O", "#fb9a99")
    _box(ax, 2.2, 2.0, 2.3, 1.0, "the sender's layer:\nclean attention output\n+ the sender's change", "#fb9a99")
    _arrow(ax, (2.2, 4.97), (2.2, 2.52), colour=RED)
    ax.text(2.35, 3.7, f"({a}) corrupted\nminus clean", fontsize=8, color=RED, ha="left", va="center")
    # between the sender and the receivers: frozen heads, recomputed MLPs
    for x in (4.2, 5.4):
        _box(ax, x, 3.1, 0.95, 0.55, "heads:\nfrozen", "#d9d9d9")
        _box(ax, x, 0.95, 0.95, 0.55, "MLP:\nrecomputed", "#b2df8a")
        _arrow(ax, (x, 2.82), (x, 2.08), colour=GREY)
        _arrow(ax, (x - 0.3, 2.0), (x - 0.1, 1.24), colour=GREEN, rad=0.3)
        _arrow(ax, (x + 0.1, 1.24), (x + 0.3, 1.92), colour=GREEN, rad=0.3)
    ax.text(4.8, 3.8, f"({b}) the stream entering\nthe receiver's layer", fontsize=8, ha="center", va="center")
    ax.text(4.8, 0.4, "each layer adds its clean attention output; each MLP reads the changed stream", fontsize=7, ha="center")
    _box(ax, 7.6, 2.0, 2.0, 1.0, f"the receiver's query ({c}):\nln1, W_Q, b_Q, rotary", "#a6cee3")
    ax.text(7.6, 2.85, f"receivers: {names}", fontsize=7.5, ha="center")
    _arrow(ax, (7.6, 0.75), (7.6, 1.48), colour=GREY)
    ax.text(7.6, 0.5, "keys and values: clean", fontsize=7.5, ha="center", color="dimgray")
    _box(ax, 10.85, 2.0, 1.6, 0.9, "ln_final, then the\nlogit difference", "#ffffb3")
    _arrow(ax, (8.6, 2.3), (10.05, 2.3), colour=BLUE)
    change = f"({d}) the receivers'\nnew output minus\ntheir clean one\n(through W_O)"
    ax.text(9.3, 3.1, change, fontsize=7.5, color=BLUE, ha="center")
    ax.text(9.3, 1.55, "everything else:\nthe clean final stream", fontsize=7, color="dimgray", ha="center", va="center")
    ax.figure.tight_layout()
    return ax


# where each class of heads acts in an IOI prompt (the paper's Figure 2), left to right
CLASS_POSITION = {"previous token": "S1+1", "duplicate token": "S2", "induction": "S2", "S-inhibition": "END",
                  "name mover": "END", "negative name mover": "END"}
CLASS_COLOUR = {"previous token": "#cab2d6", "duplicate token": "#fdbf6f", "induction": "#ffff99", "S-inhibition": "#b2df8a",
                "name mover": "#a6cee3", "negative name mover": "#fb9a99"}
CLASS_LABEL = {"previous token": "previous-token heads", "duplicate token": "duplicate-token heads",
               "induction": "induction heads", "S-inhibition": "S-inhibition heads", "name mover": "name movers",
               "negative name mover": "negative name movers"}
_COLUMN = {"previous token": 0.0, "duplicate token": 1.6, "induction": 1.6, "S-inhibition": 3.2, "name mover": 3.2,
           "negative name mover": 4.8}


def draw_circuit(
    found: dict[str, list[tuple[int, int]]],
    n_layers: int,
    arrows: list[tuple[str, str, str, bool]],
    notes: dict[str, str] | None = None,
    paper: dict[str, list[tuple[int, int]]] | None = None,
    title: str = "",
) -> Axes:
    """The circuit as boxes: one per class of heads, at the position where the class acts (x) and the mean
    layer of its heads (y), listing the heads found (and ``paper``'s, for comparison).

    ``arrows`` are ``(from class, to class or "logits", label, measured)``: solid when the notebook
    measured that path, dashed when it is the paper's path and was not measured here. ``notes`` adds a
    line to a class's box.
    """
    notes, paper = notes or {}, paper or {}
    fig, ax = plt.subplots(figsize=(11, 7.5))
    width, height = 1.4, 0.13 * n_layers
    centres: dict[str, tuple[float, float]] = {}
    for name in CLASS_POSITION:  # boxes in one column do not overlap: push a box up past the one below it
        heads = found.get(name, [])
        if not heads:
            continue
        x, y = _COLUMN[name], sum(layer for layer, _ in heads) / len(heads)
        for ox, oy in centres.values():
            if abs(ox - x) < width and abs(oy - y) < height + 0.5:
                y = oy + height + 0.5
        centres[name] = (x, y)
    patches = {}
    for name, (x, y) in centres.items():
        lines = [CLASS_LABEL[name], ", ".join(f"{layer}.{h}" for layer, h in found[name])]
        if name in paper:
            lines.append("GPT-2: " + ", ".join(f"{layer}.{h}" for layer, h in paper[name]))
        if name in notes:
            lines.append(notes[name])
        patches[name] = _box(ax, x, y, width, height, "\n".join(lines), CLASS_COLOUR[name])
    top = max(y for _, y in centres.values()) + height + 1.5
    centres["logits"] = (4.0, top)
    patches["logits"] = _box(ax, 4.0, top, 1.6, 0.08 * n_layers, "logits: logit(IO) - logit(S)", "#ffffb3")
    for source, target, label, measured in arrows:
        if source in centres and target in centres:
            (x0, y0), (x1, y1) = centres[source], centres[target]
            side = 1.0 if x0 > x1 + 0.3 else -1.0  # the label goes beside the arrow, on the side it comes from
            _arrow(ax, (x0, y0), (x1, y1), label, dashed=not measured, colour="black" if measured else "dimgray",
                   rad=0.15, patches=(patches[source], patches[target]), offset=(side * 0.95, 0))
    ax.set(xlim=(-0.9, 6.2), ylim=(-1.5, top + 1.5), ylabel="layer", title=title)
    ax.set_xticks([0.0, 1.6, 4.0], ["S1+1\n(the token after S1)", "S2\n(S's second mention)", "END\n(the last token)"])
    ax.set_yticks(range(0, n_layers + 1, 5))
    ax.plot([], [], "k-", label="measured here (path patching)")
    ax.plot([], [], "--", color="dimgray", label="the paper's path, not measured here")
    ax.legend(loc="lower right", fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return ax


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


@functools.cache
def _sender_out(n_prompts: int, seed: int) -> Tensor:
    data = _data(n_prompts, seed)
    with torch.no_grad():
        return ref.sender_attn_out(_model(), data["clean"], data["corrupt"])


@functools.cache
def _receiver_streams(n_prompts: int, seed: int, layer: int) -> Tensor:
    with torch.no_grad():
        return ref.receiver_resid(_model(), _data(n_prompts, seed)["clean"], _sender_out(n_prompts, seed), layer)


@functools.cache
def _resid_pre(n_prompts: int, seed: int, layer: int, pos: int) -> Tensor:
    name = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        _, cache = _model().run_with_cache(_data(n_prompts, seed)["clean"], names_filter=lambda n: n == name)
    return cache[name][:, pos]


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
        hints=(
            "Decide first which of IO and S fills `[A]` and which fills `[B]`: that choice is all `order` changes.",
            "ABBA means IO comes first in the first clause, BABA means S does; the first clause is the same in both "
            "prompts.",
            "Only the `[S]` slot differs between the two prompts: in the clean one it repeats a name of the first "
            "clause, in the corrupted one it is `third`.",
        ),
        difficulty=1,
        importance=3,
        minutes=5,
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
        hints=(
            "Only the last position predicts the answer: slice the logits there first, to a `[batch, d_vocab]` "
            "tensor.",
            "Each prompt needs two entries of its own row: the logit of its IO token and the logit of its S token.",
            "`t.gather(-1, index[:, None])[:, 0]` picks one entry per row (so does `t[torch.arange(batch), index]`).",
        ),
        difficulty=1,
        importance=4,
        minutes=5,
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
        hints=(
            "The logits are `norm(x) @ W_U`, so one token's logit is the dot product of `norm(x)` with that token's "
            "column of `W_U`.",
            "A difference of two logits is then a dot product with the difference of two columns; index `W_U`'s "
            "columns with a whole tensor of token ids at once.",
            "`model.W_U[:, tokens]` is `[d_model, batch]`; the function returns one row per prompt, `[batch, "
            "d_model]`.",
        ),
        difficulty=1,
        importance=4,
        minutes=5,
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
            "Three steps: split the final residual stream at the last position into its components, divide them by "
            "the final norm's scale, and project each on the prompt's direction.",
            "`cache.decompose_resid(layer=-1, pos_slice=-1)` gives `[component, batch, d_model]`, and "
            "`cache.apply_ln_to_stack(..., layer=-1, pos_slice=-1)` divides by the scale of the *whole* stream, read "
            "from the cache (not recomputed per component).",
            "Project with an einsum against your `logit_diff_directions` (contract `d_model`, one direction per "
            "prompt) and average over prompts; the entries should sum to the mean logit difference.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
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
        hints=(
            "Treat each head's output at the last position as one more component of the residual stream, and "
            "attribute it exactly as in exercise 4.",
            "A head's output is its `z` times its own slice of `W_O`: stack `cache['z', layer][:, -1]` over layers "
            "into `[layer, batch, head, d_head]` and contract `d_head` with `model.W_O` in one einsum, keeping layer "
            "and head.",
            "Flatten to `[layer * head, batch, d_model]` (layer-major) before `cache.apply_ln_to_stack(..., layer=-1, "
            "pos_slice=-1)`, and reshape the averaged result to `[layer, head]` at the end.",
        ),
        difficulty=3,
        importance=5,
        minutes=15,
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
        hints=(
            "Each entry is one corrupted run with a single (layer, position) of `resid_pre` set to its clean value; "
            "its mean logit difference is then placed on the scale 0 = corrupted, 1 = clean.",
            "Cache `resid_pre` of both runs once. For a layer, repeat the corrupted `resid_pre` once per position "
            "(`einops.repeat` to `[(pos batch), pos, d_model]`) and overwrite block p at position p only.",
            "`final_logits(model, resid, start_at_layer=layer)` runs the rest of the model; reshape the logit "
            "differences to `[pos, batch]` and average over the batch before normalising with the two baselines.",
        ),
        difficulty=3,
        importance=5,
        minutes=20,
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
        hints=(
            "The same scan as exercise 6, but what is patched is one head's `hook_z` at every position, which lives "
            "inside the layer: it needs a hook, not an edit of `resid_pre`.",
            "Start from the layer's corrupted `resid_pre` repeated once per head; the hook on "
            "`blocks.{layer}.attn.hook_z` then sees `[(head batch), pos, head, d_head]`.",
            "In the hook, clone and rearrange to `[head, batch, pos, head, d_head]`, give block h the clean `z` of "
            "head h, rearrange back; run `final_logits` inside `with model.hooks(fwd_hooks=[...]):`.",
        ),
        difficulty=3,
        importance=5,
        minutes=15,
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
        hints=(
            "One forward and one backward pass on the corrupted prompts give the gradient of the mean logit "
            "difference at every activation; one clean forward pass gives the clean activations.",
            "Under `torch.enable_grad()`, a hook on `hook_embed` that calls `requires_grad_(True)` puts the run in "
            "the graph; hooks on the chosen activations call `.retain_grad()` and keep them, and `.grad` is filled by "
            "`backward()`.",
            "Multiply the clean-minus-corrupted activation by its gradient elementwise, then sum away the axes that "
            "the result does not keep (it is `[layer, pos, head]` for `z`, `[layer, pos]` for `resid_pre`).",
        ),
        difficulty=4,
        importance=4,
        minutes=20,
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
        hints=(
            "Only the head's direct path changes: the final residual stream is the clean one plus that head's own "
            "change at the last position, and nothing in between is recomputed.",
            "A head's change is its corrupted-minus-clean `z` at the last position times its `W_O`; one einsum gives "
            "all heads at once as `[layer, head, batch, d_model]`, which broadcasts against the clean final "
            "`hook_resid_post`.",
            "Apply `model.ln_final` to the patched streams (their scale changes with the patch), project on your "
            "directions, average over prompts, and measure against the *clean* baseline.",
        ),
        difficulty=3,
        importance=5,
        minutes=15,
    ),
    Exercise(
        function="sender_attn_out",
        points=1,
        cases=lambda: [
            Case((_model(), _data(2, 4)["clean"], _data(2, 4)["corrupt"]), "2 prompts"),
            Case((_model(), _data(2, 6)["clean"], _data(2, 6)["corrupt"]), "2 other prompts"),
            Case((_model(), _data(2, 5)["clean"], _data(2, 5)["corrupt"]), "2 more prompts", hidden=True),
        ],
        reference=ref.sender_attn_out,
        atol=2e-3,
        rtol=1e-3,
        hints=(
            "Entry [l, h] is the clean attention output of layer l at END with one term changed: head h's share of "
            "it, which is that head's `z @ W_O`.",
            "Cache `hook_z` and `hook_attn_out` of both runs; a head's corrupted-minus-clean output at the last "
            "position is `(z_corrupt - z_clean)[:, -1, h] @ W_O[l, h]` — all heads at once in one einsum, as in "
            "exercise 9.",
            "Stack the clean `attn_out[:, -1]` of every layer into `[layer, batch, d_model]` and add the "
            "`[layer, head, batch, d_model]` changes to it with a new head axis (`[:, None]`).",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="receiver_resid",
        points=2,
        cases=lambda: [
            Case((_model(), _data(2, 4)["clean"], _sender_out(2, 4), 23), "2 prompts, the stream entering layer 23"),
            Case((_model(), _data(2, 6)["clean"], _sender_out(2, 6), 12), "2 other prompts, the stream entering layer 12"),
        ],
        reference=ref.receiver_resid,
        atol=2e-3,
        rtol=1e-3,
        hints=(
            "With every head frozen nothing moves between positions, so the stream at END is all that changes: "
            "follow one vector per sender from the sender's layer up to `layer`, adding the clean attention outputs "
            "and recomputing each MLP on the way.",
            "At the sender's layer l the stream is the clean `resid_pre[l]` at END plus `sender_out[l, h]` (the "
            "patched attention output); then `x = x + block.mlp(block.ln2(x))` for that block, and for each later "
            "block first `x = x + clean attn_out` at END, then its MLP.",
            "To do every sender at once, keep a `[layers so far, head, batch, d_model]` stack: at each block add the "
            "clean attention output to the streams already there, append the streams of the senders of this block, "
            "and run the block's MLP on the whole stack. Senders at or after `layer` keep the clean `resid_pre`.",
        ),
        difficulty=3,
        importance=4,
        minutes=20,
    ),
    Exercise(
        function="receiver_queries",
        points=1,
        cases=lambda: [
            Case((_model(), _resid_pre(4, 2, 23, -1), 23, 3, 14), "the clean stream at END of 4 prompts, head 23.3"),
            Case((_model(), _receiver_streams(2, 4, 23)[18:21], 23, 0, 14), "27 senders' streams for 2 prompts, head 23.0"),
            Case((_model(), _resid_pre(4, 3, 29, 9), 29, 1, 9), "the clean stream at position 9, head 29.1", hidden=True),
        ],
        reference=ref.receiver_queries,
        atol=1e-3,
        rtol=1e-3,
        hints=(
            "Do what block `layer` does to its input to make head `head`'s query, and nothing more: normalise, "
            "project, rotate.",
            "`model.blocks[layer].ln1` normalises; `attn.W_Q[head]` (`[d_model, d_head]`) and `attn.b_Q[head]` "
            "project; `@` keeps any leading axes.",
            "`attn.apply_rotary(x, past_kv_pos_offset=position)` rotates `x` of shape `[n, pos, head, d_head]` as if "
            "its first position were `position`: reshape the queries to `[n, 1, 1, d_head]` and back. Skip the "
            "rotation for a model without rotary embeddings (GPT-2).",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="path_patch_to_queries",
        points=3,
        cases=lambda: [
            Case(_args(2, 4, [(23, 3)]), "2 prompts, receiver 23.3"),
            Case(_args(2, 6, [(23, 0), (26, 1)]), "2 prompts, receivers 23.0 and 26.1"),
        ],
        reference=ref.path_patch_to_queries,
        atol=2e-3,
        rtol=1e-3,
        hints=(
            "Exercises 10-12 give each sender's new query for a receiver; what is left is what the receiver does "
            "with it — attend over its clean keys, read its clean values, write through its `W_O` — and the score "
            "of exercise 9.",
            "Compute `receiver_resid` once per receiver layer. The keys and values are the clean `hook_rot_k` and "
            "`hook_v` of the key/value head that the query head shares (three query heads per key/value head, in "
            "consecutive groups); scale the scores by `1/sqrt(d_head)` before the softmax.",
            "Each receiver's change at END is `(z_new - z_clean) @ W_O[layer, head]`, `[layer, head, batch, "
            "d_model]`; sum them over receivers, add to the clean final `hook_resid_post` at END, apply "
            "`model.ln_final` and score against the clean baseline as in exercise 9.",
        ),
        difficulty=4,
        importance=4,
        minutes=20,
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
        hints=(
            "Simulate a head that attends only to one name: push the name's representation through the head's OV "
            "circuit and read the result with the unembedding.",
            "The representation is the name's embedding plus block 0's MLP output on it (the MLP reads "
            "`blocks[0].ln2` of the embedding), then normalised with `blocks[0].ln1`; `model.W_V` and `model.W_O` "
            "take it to `[layer, head, names, d_model]`.",
            "Negate before `ln_final` for the negative score, unembed with `W_U` and `b_U`, and count a name when its "
            "own token is in `topk(k)`; chunk over layers if the logits do not fit in memory.",
        ),
        difficulty=3,
        importance=3,
        minutes=15,
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
        hints=(
            "In `[BOS, r_1 … r_T, r_1 … r_T]`, find the positions of the two copies of r_i: the query is the second "
            "copy, the key the first.",
            "All those (query, key) pairs lie on one diagonal of the pattern, a fixed distance below the main one: "
            "`patterns.diagonal(offset=..., dim1=-2, dim2=-1)`.",
            "That diagonal has one entry too many at its start: keep only the entries whose query is in the second "
            "copy, then average.",
        ),
        difficulty=2,
        importance=2,
        minutes=10,
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
        hints=(
            "Mean ablation replaces a head's output by what it outputs on average over the corrupted prompts: the "
            "names it would carry are lost, its average work stays.",
            "Cache `hook_z` of the corrupted run; the replacement is its mean over the batch axis (keepdim), one "
            "value per position and head.",
            "One hook on every `hook_z` (a filter function as the hook name) that keeps the circuit's heads with "
            "`torch.where` on `circuit[hook.layer()]`; then the clean run's mean logit difference, as a float.",
        ),
        difficulty=3,
        importance=5,
        minutes=15,
    ),
]

check = Checks(EXERCISES)
