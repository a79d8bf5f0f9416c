"""Chapter 05 — Circuit tracing: transcoders and attribution graphs, on a CPU, offline.

Ameisen et al. 2025, "Circuit Tracing: Revealing Computational Graphs in Language Models"
(transformer-circuits.pub/2025/attribution-graphs/methods.html); Lindsey et al. 2025, "On the Biology of a
Large Language Model"; Dunefsky, Chlenski and Nanda 2024, "Transcoders Find Interpretable LLM Feature
Circuits" (arXiv 2406.11944). The chapter trains per-layer TopK transcoders for the upper half of SmolLM2-135M
(layers 15–29; `utils/transcoders.py`), builds the local replacement model and attribution graphs of single
prompts (`utils/attribution_graph.py`) and tests them against interventions in the real model.

This module holds the chapter's prompts, pictures and views, and its exercise table; the reference
implementations are in `utils/references/chapter05.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib.pyplot as plt
import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from utils.attribution_graph import (
    Graph,
    attribute,
    frozen_change,
    graph_scores,
    influence,
    local_replacement,
    measured_change,
    predicted_change,
    prune_graph,
)
from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise
from utils.graph_view import graph_view
from utils.references import chapter05 as ref
from utils.transcoders import TranscoderConfig, Transcoders, input_hook, pretrained_transcoders, run_transcoder
from utils.visuals import LatentCard, View, latent_cards

CONFIG = TranscoderConfig()  # the chapter's band: layers 15–29, 2,304 latents, k = 32
PROMPTS = {
    "ioi": "When Mary and John went to the store, John gave a drink to",  # chapter 03's task
    "agreement": "The keys of the cabinet",  # chapter 04a's task: " are" against " is"
    "two-hop": "The language spoken in the country whose capital is Paris is",  # Paris → France → French
}

# What Ameisen et al. 2025 report for their 18-layer model ("18L"), printed beside ours: section anchors of
# transformer-circuits.pub/2025/attribution-graphs/methods.html. Its transcoders are cross-layer (CLT) or per layer
# (PLT, like ours), over all its layers, with 300K–10M features in all; ours are 15 per-layer ones of 2,304.
PAPER = {
    "clt_nmse": 0.115,  # normalised mean reconstruction error of the largest 18L CLT (10M features) #evaluating-model-clt
    "clt_l0": 88,  # its average L0
    "top1_agreement": 0.50,  # largest 18L CLT: the replacement model's top token is the model's #building-replacement
    # (replacement, completeness) of unpruned graphs, mean over pretraining prompts, 10M features #evaluating-graphs-comparing
    "unpruned": {"CLT": (0.61, 0.80), "PLT": (0.37, 0.78)},
    "pruned_08": (0.70, 55),  # default pruning (0.8): completeness and node count of one acronym graph #evaluating-graphs-pruning
}


def load_transcoders(model: HookedTransformer, verbose: bool = True) -> tuple[Transcoders, dict]:
    """The chapter's 15 transcoders (trained once, about 15 minutes on 2 CPU cores and 3.3 GB at the peak, then read
    from disk)."""
    return pretrained_transcoders(model, CONFIG, verbose=verbose)


def transcoder_table(info: dict) -> str:
    """The held-out metrics per layer, as a text table."""
    lines = ["layer  MLP-output variance explained   L0   dead latents"]
    for layer, m in info["metrics"].items():
        lines.append(f"{int(layer):5}  {m['variance_explained']:29.3f}  {m['l0']:4.0f}   {m['dead_fraction']:11.1%}")
    return "\n".join(lines)


def paper_comparison(info: dict, ce: dict[str, float], graphs: dict[str, Graph]) -> str:
    """Our transcoders', replacement model's and graphs' figures beside `PAPER`'s, as a text table."""
    nmse = [1 - m["variance_explained"] for m in info["metrics"].values()]
    l0 = sum(m["l0"] for m in info["metrics"].values()) / len(nmse)
    unpruned = {name: graph_scores(graph) for name, graph in graphs.items()}
    pruned = {}
    for name, graph in graphs.items():
        mask = prune_graph(graph)[0]
        pruned[name] = (graph_scores(graph, mask)[1], int(mask[: graph.inputs.start].sum()))

    def per_prompt(values: dict, fmt: str) -> str:
        return " · ".join(f"{name} {fmt.format(v)}" for name, v in values.items())

    rows = [
        ("transcoder error (1 − VE), mean",
         f"{sum(nmse) / len(nmse):.2f} ({min(nmse):.2f}–{max(nmse):.2f}), L0 {l0:.0f}",
         f"CLT {PAPER['clt_nmse']:.3f}, L0 {PAPER['clt_l0']}"),
        ("replaced model keeps the top token",
         f"{ce['top1_agreement']:.2f} of {ce['top1_tokens']} tokens",
         f"CLT {PAPER['top1_agreement']:.2f}"),
        ("unpruned graph: replacement", per_prompt({n: v[0] for n, v in unpruned.items()}, "{:.2f}"),
         " · ".join(f"{kind} {v[0]:.2f}" for kind, v in PAPER["unpruned"].items())),
        ("unpruned graph: completeness", per_prompt({n: v[1] for n, v in unpruned.items()}, "{:.2f}"),
         " · ".join(f"{kind} {v[1]:.2f}" for kind, v in PAPER["unpruned"].items())),
        ("pruned at 0.8: completeness", per_prompt({n: v[0] for n, v in pruned.items()}, "{:.2f}"),
         f"{PAPER['pruned_08'][0]:.2f} (one acronym prompt, CLT)"),
        ("pruned at 0.8: feature + error nodes", per_prompt({n: v[1] for n, v in pruned.items()}, "{}"),
         f"{PAPER['pruned_08'][1]} nodes (same prompt)"),
    ]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{'':{width[0]}}  {'ours: SmolLM2-135M, 15 per-layer transcoders':{width[1]}}  Ameisen et al. 2025, 18L"]
    lines += [f"{a:{width[0]}}  {b:{width[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def plot_transcoder_quality(info: dict) -> None:
    layers = [int(layer) for layer in info["metrics"]]
    ve = [m["variance_explained"] for m in info["metrics"].values()]
    dead = [m["dead_fraction"] for m in info["metrics"].values()]
    _, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(layers, ve, color="tab:blue", label="MLP-output variance explained (held out)")
    ax.plot(layers, dead, color="tab:red", marker="o", label="fraction of latents dead on the held-out text")
    ax.set(xlabel="layer", ylim=(0, 1), xticks=layers, title="the chapter's transcoders, layer by layer")
    ax.legend(loc="upper left", fontsize=8)
    plt.tight_layout()


def graph_for(
    model: HookedTransformer, transcoders: Transcoders, prompt: str, targets: list[str] | None = None, **options
) -> Graph:
    """The attribution graph of ``prompt`` (to its top logits, or to the logits of the words ``targets``).

    Backward passes 8 rows at a time, influence re-estimated every 16 batches: the same 128 rows between estimates
    as `attribute`'s defaults (32 × 4), so the same features get rows, at a quarter of the memory (at 32 the
    chapter's kernel passed 1.5 GB here; bench/chapters.py)."""
    tokens = model.to_tokens(prompt)[0]
    target_ids = [model.to_single_token(word) for word in targets] if targets else None
    options = {"batch_size": 8, "update_every": 16, **options}
    return attribute(model, transcoders, CONFIG.k, tokens, targets=target_ids, **options)


# ---------------------------------------------------------------------------------------------
# Pictures of a graph


def token_positions(graph: Graph) -> Tensor:
    """The token position of every node (a logit node: the last)."""
    band, pos = len(graph.layers), graph.n_pos
    return torch.cat(
        [graph.features[:, 1], torch.arange(pos).repeat(band), torch.arange(pos), torch.full((len(graph.logit_tokens),), pos - 1)]
    )


def node_positions(graph: Graph) -> tuple[Tensor, Tensor]:
    """(x, y) per node: x = the token position (features of one layer and position spread around it, errors a little
    to the right), y = 0 for inputs, 1 + band index for features and errors, band + 1 for the logits (spread over the
    last position)."""
    n = len(graph.adjacency)
    x, y = torch.zeros(n), torch.zeros(n)
    x[: graph.n_features] = graph.features[:, 1].float()
    y[: graph.n_features] = 1.0 + (graph.features[:, 0] - graph.layers[0]).float()
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (layer, pos, _) in enumerate(graph.features.tolist()):
        cells.setdefault((layer, pos), []).append(i)
    for members in cells.values():  # features of one layer and position side by side, not on top of each other
        step = min(0.12, 0.6 / len(members))
        for j, i in enumerate(members):
            x[i] += (j - (len(members) - 1) / 2) * step
    band, pos = len(graph.layers), graph.n_pos
    x[graph.errors] = torch.arange(pos).repeat(band).float() + 0.4
    y[graph.errors] = 1.0 + torch.arange(band).repeat_interleave(pos).float()
    x[graph.inputs] = torch.arange(pos).float()
    n_logits = len(graph.logit_tokens)
    x[graph.logits] = pos - 1 + 0.25 * (torch.arange(n_logits).float() - (n_logits - 1) / 2)
    y[graph.logits] = band + 1.0
    return x, y


def strongest_edges(graph: Graph, edge_mask: Tensor, n: int = 300) -> Tensor:
    """The ``n`` kept edges of largest |weight| (a pruned graph keeps thousands; a picture shows a few hundred)."""
    weights = (graph.adjacency * edge_mask).abs().flatten()
    keep = torch.zeros_like(weights, dtype=torch.bool)
    keep[weights.topk(min(n, int((weights > 0).sum()))).indices] = True
    return keep.view_as(edge_mask)


def plot_graph(graph: Graph, node_mask: Tensor, edge_mask: Tensor, labels: list[str], words: list[str], title: str) -> None:
    """The pruned graph: nodes by layer (rows) and position (columns); its 300 strongest edges (blue +, red −)."""
    x, y = node_positions(graph)
    weights = graph.adjacency * strongest_edges(graph, edge_mask)
    peak = float(weights.abs().max()) or 1.0
    _, ax = plt.subplots(figsize=(11, 6))
    targets, sources = weights.nonzero(as_tuple=True)
    for t, s in zip(targets.tolist(), sources.tolist()):
        w = float(weights[t, s])
        ax.plot([x[s], x[t]], [y[s], y[t]], color="tab:blue" if w > 0 else "tab:red", lw=0.3 + 2.5 * abs(w) / peak, alpha=0.5)
    kinds = [
        (slice(0, graph.n_features), "o", "tab:orange", "feature"),
        (graph.errors, "s", "gray", "error"),
        (graph.inputs, "^", "tab:green", "input (residual stream entering the band)"),
        (graph.logits, "D", "tab:purple", "logit"),
    ]
    for where, marker, colour, name in kinds:
        idx = torch.arange(len(node_mask))[where]
        idx = idx[node_mask[idx]]
        ax.scatter(x[idx], y[idx], marker=marker, color=colour, s=40, label=name, zorder=3, edgecolor="black", lw=0.4)
    for i in torch.arange(len(node_mask))[graph.logits].tolist()[:1]:  # the most likely (the others crowd it)
        ax.annotate(labels[i].removeprefix("logit "), (x[i], y[i] + 0.25), fontsize=7, ha="center")
    ax.set_xticks(range(graph.n_pos), [w.replace("\n", "↵") for w in words], rotation=60, fontsize=8)
    ax.set_yticks(
        [0, *range(1, len(graph.layers) + 1), len(graph.layers) + 1],
        ["input", *[f"L{layer}" for layer in graph.layers], "logits"],
        fontsize=8,
    )
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=7, ncols=4)
    plt.tight_layout()


def graph_explorer(
    graph: Graph,
    node_mask: Tensor,
    edge_mask: Tensor,
    labels: list[str],
    words: list[str],
    title: str,
    summaries: dict[int, str] | None = None,
) -> View:
    """The pruned graph as an interactive view (hover a node: its label, influence and summary; its edges light up;
    the 300 strongest edges are drawn)."""
    x, y = node_positions(graph)
    scores = influence(graph.adjacency, graph.logit_weights())
    kept = node_mask.nonzero().flatten().tolist()
    kind = ["feature"] * graph.n_features + ["error"] * (graph.errors.stop - graph.errors.start)
    kind += ["input"] * graph.n_pos + ["logit"] * len(graph.logit_tokens)
    nodes = []
    for i in kept:
        text = f"{labels[i]} · influence {float(scores[i]):.3f}"
        if i < graph.n_features:
            text += f" · activation {float(graph.activations[i]):.2f}"
        if summaries and i in summaries:
            text += f" · {summaries[i]}"
        nodes.append({"id": i, "x": round(float(x[i]), 2), "y": round(float(y[i]), 2), "kind": kind[i], "text": text})
    index = {node["id"]: n for n, node in enumerate(nodes)}
    weights = graph.adjacency * strongest_edges(graph, edge_mask)
    targets, sources = weights.nonzero(as_tuple=True)
    edges = [
        [index[s], index[t], round(float(weights[t, s]), 4)]
        for t, s in zip(targets.tolist(), sources.tolist())
        if s in index and t in index
    ]
    rows = ["input", *[f"L{layer}" for layer in graph.layers], "logits"]
    return graph_view(
        nodes,
        edges,
        [w.replace("\n", "↵") for w in words],
        rows,
        title,
        lambda: plot_graph(graph, node_mask, edge_mask, labels, words, title),
    )


def top_features(graph: Graph, node_mask: Tensor, n: int) -> list[int]:
    """The ``n`` kept features with the largest influence on the logits (indices into the graph's features)."""
    scores = influence(graph.adjacency, graph.logit_weights())[: graph.n_features]
    kept = node_mask[: graph.n_features].nonzero().flatten()
    return kept[scores[kept].argsort(descending=True)][:n].tolist()


def feature_cards(
    model: HookedTransformer,
    transcoders: Transcoders,
    graph: Graph,
    features: list[int],
    n_seqs: int = 64,
    seq_len: int = 64,
) -> list[LatentCard]:
    """Dashboards (chapter 02's cards) for graph features: each latent's activations over ``n_seqs`` corpus passages
    (one forward pass for all of them), its top contexts and the logits its decoder row writes to directly."""
    from utils.data import token_sequences

    tokens = token_sequences(model, seq_len=seq_len, n_seqs=n_seqs)
    wanted = [tuple(graph.features[i].tolist()) for i in features]
    names = {input_hook(layer) for layer, _, _ in wanted}
    columns, decoders = [], []
    with torch.no_grad():
        # up to the last layer wanted: no [64, 64, 49,152] logits (805 MB, past 1.5 GB in the chapter's kernel)
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names,
                                        stop_at_layer=max(layer for layer, _, _ in wanted) + 1)
        for layer, _, latent in wanted:
            acts = run_transcoder(transcoders[layer], cache[input_hook(layer)], CONFIG.k)[0][..., latent]
            acts[:, 0] = 0  # BOS: no features, as in the graph
            columns.append(acts)
            decoders.append(transcoders[layer]["W_dec"][latent])
    values = torch.stack(columns, -1)
    label = [f"L{layer}/f{latent}" for layer, _, latent in wanted]
    return latent_cards(model, tokens, values, torch.stack(decoders), list(range(len(wanted))), names=label)


CONDITIONS = {
    "replacement": "local replacement model, latents live",
    "real_norms_frozen": "real model, norm denominators frozen",
    "real": "real model",
}


def interventions(
    model: HookedTransformer,
    transcoders: Transcoders,
    graph: Graph,
    features: list[int],
    factors: tuple[float, ...] = (0.0, 2.0),
    predict: Callable = predicted_change,
) -> list[dict]:
    """For each feature and factor: the graph's predictions (direct only, and along all paths) and the measured change
    of the top logit (demeaned) in three models: the local replacement model with its latents live (TopK recomputed,
    errors, patterns and norms frozen), the real model with only its norm denominators frozen, and the real model."""
    rep = local_replacement(model, transcoders, CONFIG.k, graph.tokens)
    rows = []
    for i in features:
        for factor in factors:
            direct, total = predict(graph, [i], factor)
            rows.append(
                {
                    "feature": i,
                    "factor": factor,
                    "direct": direct,
                    "predicted": total,
                    "replacement": frozen_change(model, transcoders, rep, graph, [i], factor),
                    "real_norms_frozen": measured_change(model, transcoders, graph, [i], factor, frozen=("scales",), rep=rep),
                    "real": measured_change(model, transcoders, graph, [i], factor),
                }
            )
    return rows


def agreement(rows: list[dict], condition: str) -> tuple[float, float]:
    """(correlation, slope through 0) of the measured changes in ``condition`` against the graph's predictions."""
    predicted = torch.tensor([r["predicted"] for r in rows])
    measured = torch.tensor([r[condition] for r in rows])
    return torch.corrcoef(torch.stack([predicted, measured]))[0, 1].item(), float(predicted @ measured / (predicted @ predicted))


def plot_interventions(rows: list[dict], title: str) -> None:
    """Predicted against measured in each condition, one dot per (feature, factor)."""
    predicted = torch.tensor([r["predicted"] for r in rows])
    lim = float(torch.tensor([[r[c] for c in CONDITIONS] + [r["predicted"]] for r in rows]).abs().max()) * 1.1
    _, axes = plt.subplots(1, len(CONDITIONS), figsize=(13, 4.2), sharey=True)
    for ax, (condition, name) in zip(axes, CONDITIONS.items()):
        measured = torch.tensor([r[condition] for r in rows])
        for factor, marker in [(0.0, "o"), (2.0, "s")]:
            pick = [n for n, row in enumerate(rows) if row["factor"] == factor]
            ax.scatter(predicted[pick], measured[pick], marker=marker, label=f"feature × {factor:g}")
        r, slope = agreement(rows, condition)
        ax.plot([-lim, lim], [-lim, lim], color="gray", lw=0.7, ls="--")
        ax.set(
            xlim=(-lim, lim), ylim=(-lim, lim), xlabel="predicted by the graph", title=f"{name}\nr = {r:.2f}, slope {slope:.2f}"
        )
    axes[0].set_ylabel("measured change of the logit")
    axes[0].legend(fontsize=8)
    plt.suptitle(title)
    plt.tight_layout()


# ---------------------------------------------------------------------------------------------
# Checks: the cases every learner's function is run on


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _transcoder_case(seed: int, shape: tuple[int, ...], d_in: int, d_sae: int, d_out: int, k: int) -> tuple:
    g = _g(seed)
    params = {
        "W_enc": torch.randn(d_in, d_sae, generator=g),
        "b_enc": torch.randn(d_sae, generator=g) - 1.5,
        "W_dec": torch.randn(d_sae, d_out, generator=g),
        "b_dec": torch.randn(d_out, generator=g),
    }
    return params, torch.randn(*shape, d_in, generator=g), k


def _attention_case(seed: int, pos: int, d_model: int, heads: int, d_head: int) -> tuple:
    g = _g(seed)
    scores = torch.randn(heads, pos, pos, generator=g).masked_fill(torch.ones(pos, pos).triu(1).bool(), -math.inf)
    return (
        torch.randn(pos, d_model, generator=g) * 3,
        torch.rand(pos, 1, generator=g) + 0.5,
        scores.softmax(-1),
        torch.randn(heads, d_model, d_head, generator=g),
        torch.randn(heads, d_head, d_model, generator=g),
    )


def _effects_case(seed: int, targets: int, band: int, pos: int, d: int, n_features: int) -> tuple:
    g = _g(seed)
    features = torch.stack(
        [torch.randint(0, band, (n_features,), generator=g), torch.randint(0, pos, (n_features,), generator=g)], 1
    )
    return (
        torch.randn(targets, band, pos, d, generator=g),
        torch.randn(targets, pos, d, generator=g),
        features,
        torch.randn(n_features, d, generator=g),
        torch.randn(band, pos, d, generator=g),
        torch.randn(pos, d, generator=g),
    )


def _dag(seed: int, n: int, n_logits: int, density: float = 0.5) -> tuple[Tensor, Tensor]:
    """A random signed adjacency whose edges go from lower to higher index (a DAG) in a shuffled order, the last
    ``n_logits`` nodes being the logits (sources of nothing), and the logit weights."""
    g = _g(seed)
    A = torch.randn(n, n, generator=g) * (torch.rand(n, n, generator=g) < density)
    A = A.tril(-1)
    order = torch.cat([torch.randperm(n - n_logits, generator=g), torch.arange(n - n_logits, n)])
    A = A[order][:, order]  # still a DAG; the logits stay last and have no outgoing edges
    A[:, -n_logits:] = 0
    weights = torch.zeros(n)
    weights[-n_logits:] = torch.rand(n_logits, generator=g).softmax(0) * 0.9
    return A, weights


def _influence_case(seed: int, n: int, n_logits: int) -> tuple:
    return _dag(seed, n, n_logits)


def _keep_case(seed: int, n: int, fraction: float) -> tuple:
    return torch.rand(n, generator=_g(seed)) ** 3, fraction


def _scores_case(seed: int, n_features: int, n_errors: int, n_inputs: int, n_logits: int) -> tuple:
    """A graph in the chapter's node order: features (among themselves a DAG), errors and inputs (sources only), logits."""
    g = _g(seed)
    n = n_features + n_errors + n_inputs + n_logits
    A = torch.zeros(n, n)
    sources = n_features + n_errors + n_inputs
    A[:n_features, :sources] = torch.randn(n_features, sources, generator=g) * (
        torch.rand(n_features, sources, generator=g) < 0.6
    )
    A[:n_features, :n_features] = A[:n_features, :n_features].tril(-1)
    A[-n_logits:, :sources] = torch.randn(n_logits, sources, generator=g)
    weights = torch.zeros(n)
    weights[-n_logits:] = torch.rand(n_logits, generator=g).softmax(0) * 0.9
    is_error = torch.zeros(n, dtype=torch.bool)
    is_error[n_features : n_features + n_errors] = True
    is_input = torch.zeros(n, dtype=torch.bool)
    is_input[n_features + n_errors : sources] = True
    return A, weights, is_error, is_input


def _change_case(seed: int, n_features: int, nodes: list[int], factor: float) -> tuple:
    A, _, _, _ = _scores_case(seed, n_features, 3, 2, 2)
    activations = torch.rand(n_features, generator=_g(seed + 100)) + 0.5
    return A, activations, nodes, factor, len(A) - 2


EXERCISES = [
    Exercise(
        function="transcoder_forward",
        points=1,
        cases=lambda: [
            Case(_transcoder_case(0, (5,), 6, 12, 6, 3), "5 rows, d_in = d_out = 6, 12 latents, k = 3"),
            Case(_transcoder_case(1, (2, 3), 8, 10, 5, 4), "[2, 3] rows, d_in 8, d_out 5, 10 latents, k = 4"),
        ],
        reference=ref.transcoder_forward,
        atol=1e-5,
        hints=(
            "A transcoder is an SAE whose decoder writes somewhere else: it reads the MLP's input and predicts the MLP's "
            "output, so nothing of the output space (b_dec) is subtracted from the input.",
            "Keep the k largest pre-activations of each row and pass them through a ReLU (a kept value can be negative); "
            "every other latent is exactly 0.",
            "topk along the last axis gives values and indices; scatter the ReLU'd values into zeros_like(pre), then "
            "decode with W_dec and add b_dec. Return both tensors.",
        ),
        difficulty=1,
        importance=4,
        minutes=5,
    ),
    Exercise(
        function="frozen_attention",
        points=2,
        cases=lambda: [
            Case(_attention_case(10, 5, 8, 3, 4), "5 positions, d_model 8, 3 heads of 4"),
            Case(_attention_case(11, 7, 6, 2, 3), "7 positions, d_model 6, 2 heads of 3"),
        ],
        reference=ref.frozen_attention,
        atol=1e-4,
        hints=(
            "With the pattern and the norm's denominator fixed, attention is a sum over heads of three linear steps: "
            "normalise, read values, mix positions by the pattern, and write out through W_O.",
            "The pattern mixes key positions into query positions: output row q uses pattern[h, q, :] on the values of "
            "every key position. The norm divides (resid / scale), it does not multiply.",
            "einops.einsum in three steps: (resid / scale) with W_V → [head, pos, d_head]; the pattern with that → "
            "[head, q_pos, d_head]; that with W_O, summing the heads → [q_pos, d_model].",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="direct_effects",
        points=2,
        cases=lambda: [
            Case(_effects_case(20, 3, 2, 4, 5, 6), "3 targets, a band of 2 layers, 4 positions, 6 features"),
            Case(_effects_case(21, 2, 3, 3, 4, 9), "2 targets, a band of 3 layers, 3 positions, 9 features"),
        ],
        reference=ref.direct_effects,
        atol=1e-4,
        hints=(
            "Every source writes one vector into the residual stream at one place; its direct effect on a target is that "
            "vector dotted with the target's gradient at that place.",
            "A feature writes decoder_vecs[s] into the MLP output of its band layer, at its position: pick grad_mlp at "
            "[:, layer, position] of each feature. Error nodes come band layer by band layer, each over all positions.",
            "Index grad_mlp with the features' two columns at once ([:, features[:, 0], features[:, 1]]), multiply by the "
            "vectors and sum d_model; for errors, (grad_mlp * errors).sum(-1).flatten(1); concatenate along dim 1.",
        ),
        difficulty=2,
        importance=5,
        minutes=15,
    ),
    Exercise(
        function="influence",
        points=2,
        cases=lambda: [
            Case(_influence_case(30, 9, 2), "9 nodes (2 logits)"),
            Case(_influence_case(31, 14, 3), "14 nodes (3 logits)"),
        ],
        reference=ref.influence,
        atol=1e-5,
        hints=(
            "Influence counts every path to the logits, not only direct edges: a node reaching a logit through three "
            "others counts too, each path weighted by the product of its (normalised) edges.",
            "Normalise |adjacency| so each node's incoming edges (a row) sum to 1. Then w A is the influence through paths "
            "of length one, w A A of length two, and so on.",
            "Start with current = logit_weights @ A, add it to a total, multiply by A again, and stop when current is all "
            "zeros (in a graph without cycles it gets there). The logit weights themselves are not part of the total.",
        ),
        difficulty=3,
        importance=5,
        minutes=15,
    ),
    Exercise(
        function="keep_by_influence",
        points=1,
        cases=lambda: [
            Case(_keep_case(40, 20, 0.8), "20 scores, keep 0.8"),
            Case(_keep_case(41, 12, 0.5), "12 scores, keep 0.5"),
            Case((torch.tensor([1.0, 4.0, 2.0, 3.0]), 0.7), "scores 1, 4, 2, 3: a share of exactly 0.7 is reached by 4 and 3"),
            Case(_keep_case(42, 9, 1.0), "keep everything", hidden=True),
        ],
        reference=ref.keep_by_influence,
        atol=0,
        rtol=0,
        hints=(
            "Sort the scores from the largest, and walk down until the nodes seen so far hold the fraction of the total; "
            "the node where that happens is the last one kept.",
            "The running share is cumsum / sum of the sorted scores; torch.searchsorted finds the first index where it "
            "reaches the fraction (a share exactly equal to it counts as reached).",
            "Clamp that index to the last one (fraction 1.0), read the score there, and return scores >= it, in the "
            "original order of the nodes.",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="graph_scores",
        points=2,
        cases=lambda: [
            Case(_scores_case(50, 6, 3, 2, 2), "6 features, 3 error nodes, 2 inputs, 2 logits"),
            Case(_scores_case(51, 10, 4, 3, 3), "10 features, 4 error nodes, 3 inputs, 3 logits"),
        ],
        reference=ref.graph_scores,
        atol=1e-5,
        hints=(
            "Both scores ask how much of the graph's explanation runs through error nodes: replacement compares the "
            "inputs' influence with the error nodes', completeness looks at each node's incoming edges.",
            "Use your `influence` for the scores per node. For completeness, the share of a node's incoming |edges| from "
            "error nodes is the sum of its normalised row over the error columns.",
            "Weight each node by influence + logit_weights (so the logits count with their probability), average "
            "1 − error share with those weights, and return two Python floats (.item()).",
        ),
        difficulty=2,
        importance=4,
        minutes=15,
    ),
    Exercise(
        function="predicted_change",
        points=3,
        cases=lambda: [
            Case(_change_case(60, 8, [2], 0.0), "8 features, ablate feature 2"),
            Case(_change_case(61, 10, [0, 3], 2.0), "10 features, double features 0 and 3"),
            Case(_change_case(62, 7, [1], -1.0), "7 features, flip feature 1", hidden=True),
        ],
        reference=ref.predicted_change,
        atol=1e-4,
        hints=(
            "An edge is the effect of a source at its full activation, so a source changed by a fraction r changes each "
            "target's input by edge · r; a downstream feature then changes by that amount, which is a fraction of its own "
            "activation, and passes it on.",
            "Keep a vector r over all nodes: factor − 1 for the intervened features (they stay there), 0 for errors and "
            "inputs, and for every other feature (adjacency[feature] @ r) / its activation.",
            "Recompute r from itself until it stops changing (at most the graph's depth), then read the target's change "
            "as adjacency[target] @ r and return it as a float.",
        ),
        difficulty=3,
        importance=4,
        minutes=20,
    ),
]

check = Checks(EXERCISES)


def describe_graph(graph: Graph, node_mask: Tensor, edge_mask: Tensor) -> str:
    kept = node_mask[: graph.n_features].sum().item()
    return (
        f"{graph.n_active:,} active features on {graph.n_pos} tokens; rows computed for {graph.n_features}; "
        f"pruned graph: {kept} features, {int(node_mask[graph.errors].sum())} error nodes, {int(edge_mask.sum())} edges"
    )
