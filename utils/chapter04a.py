"""Section 04a — Sparse feature circuits (Marks et al. 2024, arXiv 2403.19647).

Subject–verb agreement in SmolLM2-135M, explained with SAE latents: TopK SAEs (chapter 02's recipe) on
the residual stream before blocks 4, 8 and 12 are spliced into the forward pass as x = x̂(f) + ε, so
every latent f_i AND every error term ε is a node. A node's effect on the metric (logit difference of
the right vs the wrong verb) is estimated with attribution patching or integrated gradients; the
nodes with the largest effects form the circuit, and everything outside it is mean-ablated to
measure faithfulness.

Conventions used everywhere below:
- node activations of one layer are a dict ``{"latents": [batch, pos, d_sae], "error": [batch, pos, d_model]}``
  over the prompt positions after BOS (the BOS position is an attention sink the SAEs never saw);
- a layer's node scores are a vector ``[d_sae + 1]``: one entry per latent, the last one is the error node;
- a node is the same latent at *every* position (scores summed over positions, averaged over prompts).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

import matplotlib.pyplot as plt
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.chapter02 import decode, encode, max_activating_html, pretrained_sae
from utils.grading import Case, Checks, Exercise

LAYERS = (4, 8, 12)
K = 32  # the SAEs are TopK SAEs with k = 32 and 1,536 latents
D_SAE = 1536
Nodes = dict[str, Tensor]  # {"latents": [batch, pos, d_sae], "error": [batch, pos, d_model]}

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
# Reference implementations (the learner writes their own in the notebook)


def logit_diff(
    logits: Float[Tensor, "batch pos vocab"], correct: Int[Tensor, " batch"], wrong: Int[Tensor, " batch"]
) -> Float[Tensor, " batch"]:
    last = logits[:, -1]
    rows = torch.arange(len(last))
    return last[rows, correct] - last[rows, wrong]


def attribution(grad: Nodes, clean: Nodes, patch: Nodes) -> Float[Tensor, " nodes"]:
    latents = (grad["latents"] * (patch["latents"] - clean["latents"])).sum(1).mean(0)
    error = (grad["error"] * (patch["error"] - clean["error"])).sum((1, 2)).mean(0)
    return torch.cat([latents, error[None]])


def integrated_gradients(grad_fn: Callable[[Nodes], Nodes], clean: Nodes, patch: Nodes, steps: int) -> Float[Tensor, " nodes"]:
    alphas = torch.arange(steps) / steps  # 0, 1/steps, ..., (steps-1)/steps: the paper's left Riemann sum
    points = {}
    for name in clean:
        shape = (steps,) + (1,) * clean[name].ndim
        points[name] = clean[name] + alphas.view(shape) * (patch[name] - clean[name])
    grads = grad_fn(points)
    return attribution({name: g.mean(0) for name, g in grads.items()}, clean, patch)


def top_nodes(scores: dict[int, Float[Tensor, " nodes"]], n: int) -> dict[int, Bool[Tensor, " nodes"]]:
    flat = torch.cat([scores[layer] for layer in scores]).abs()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(n).indices] = True
    masks, start = {}, 0
    for layer in scores:
        masks[layer] = keep[start : start + len(scores[layer])]
        start += len(scores[layer])
    return masks


def mean_ablate(acts: Nodes, mean: Nodes, keep: Bool[Tensor, " nodes"]) -> Nodes:
    latents = torch.where(keep[:-1], acts["latents"], mean["latents"])
    error = acts["error"] if keep[-1] else mean["error"].expand_as(acts["error"])
    return {"latents": latents, "error": error}


def faithfulness(m_circuit: Float[Tensor, " circuits"], m_empty: float, m_full: float) -> Float[Tensor, " circuits"]:
    return (m_circuit - m_empty) / (m_full - m_empty)


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


def task_accuracy(model: HookedTransformer, data: dict, metric_fn: Callable = logit_diff) -> tuple[float, float]:
    """(accuracy, mean logit difference) of the model on the clean prompts."""
    with torch.no_grad():
        last = model.unembed(model.ln_final(model(data["clean"], stop_at_layer=model.cfg.n_layers)[:, -1:]))
        diff = metric_fn(last, data["correct"], data["wrong"])
    return (diff > 0).float().mean().item(), diff.mean().item()


# ---------------------------------------------------------------------------------------------
# SAEs spliced into the forward pass


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


def sae_nodes(params: dict[str, Tensor], x: Float[Tensor, "batch pos d_model"]) -> Nodes:
    """The nodes of one layer: latents f = encode(x) and the error ε = x − x̂(f).

    f is cut from the graph (a constant for autograd) and ε carries x's gradient: x̂(f) + ε then passes
    gradients through unchanged (dx/dx = 1, as in the model without SAEs), while ∂m/∂f and ∂m/∂ε are the
    partial derivatives with the other node held fixed, as in the paper."""
    f = encode(params, x.detach(), K)
    if x.requires_grad:
        f.requires_grad_(True)
    return {"latents": f, "error": x - decode(params, f).detach()}


def splice(params: dict[str, Tensor], nodes: Nodes) -> Float[Tensor, "batch pos d_model"]:
    """x̂(f) + ε: equal to x in value, but a function of the nodes."""
    return decode(params, nodes["latents"]) + nodes["error"]


def run_with_saes(
    model: HookedTransformer,
    saes: dict,
    tokens: Int[Tensor, "batch pos"],
    edit: Callable[[int, Nodes], Nodes] | None = None,
    keep_grad: bool = False,
) -> tuple[Float[Tensor, "batch vocab"], dict[int, Nodes]]:
    """Final-position logits with every SAE spliced in (positions after BOS), and each layer's nodes.

    ``edit(layer, nodes)`` may replace a layer's nodes (e.g. mean-ablate some); ``keep_grad`` keeps the
    graph so that the nodes' gradients can be taken afterwards.
    """
    store: dict[int, Nodes] = {}

    def hook(resid: Tensor, hook, layer: int) -> Tensor:
        if keep_grad and not resid.requires_grad:  # the first spliced layer: start the graph here
            resid = resid.detach().requires_grad_(True)
        nodes = sae_nodes(saes[layer], resid[:, 1:])
        if edit is not None:
            nodes = edit(layer, nodes)
        store[layer] = nodes
        return torch.cat([resid[:, :1], splice(saes[layer], nodes)], dim=1)

    hooks = [(f"blocks.{layer}.hook_resid_pre", functools.partial(hook, layer=layer)) for layer in saes]
    with torch.set_grad_enabled(keep_grad), model.hooks(fwd_hooks=hooks):
        resid = model(tokens, stop_at_layer=model.cfg.n_layers)
    return model.unembed(model.ln_final(resid[:, -1:]))[:, 0], store  # unembed only the last position


def _metric(logits_last: Tensor, data: dict, metric_fn: Callable) -> Tensor:
    return metric_fn(logits_last[:, None], data["correct"], data["wrong"])


def attribution_scores(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    attribution_fn: Callable = attribution,
    metric_fn: Callable = logit_diff,
) -> tuple[dict[int, Tensor], dict[int, Nodes], dict[int, Nodes]]:
    """Attribution patching: one forward + backward on the clean prompts, one forward on the corrupted.

    Returns each layer's node scores and the clean and corrupted ("patch") nodes.
    """
    logits, clean = run_with_saes(model, saes, data["clean"], keep_grad=True)
    leaves = [clean[layer][name] for layer in saes for name in ("latents", "error")]
    grads = torch.autograd.grad(_metric(logits, data, metric_fn).sum(), leaves)
    grad = {layer: {"latents": grads[2 * i], "error": grads[2 * i + 1]} for i, layer in enumerate(saes)}
    _, patch = run_with_saes(model, saes, data["corrupt"])
    clean = {layer: {name: t.detach() for name, t in nodes.items()} for layer, nodes in clean.items()}
    scores = {layer: attribution_fn(grad[layer], clean[layer], patch[layer]) for layer in saes}
    return scores, clean, patch


def final_logits(model: HookedTransformer, resid: Float[Tensor, "batch pos d_model"], layer: int) -> Float[Tensor, "batch vocab"]:
    """Run the model from ``blocks.{layer}.hook_resid_pre`` on and unembed only the last position."""
    out = model(resid, start_at_layer=layer, stop_at_layer=model.cfg.n_layers)
    return model.unembed(model.ln_final(out[:, -1:]))[:, 0]


def layer_grad_fn(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    layer: int,
    bos: Tensor,
    metric_fn: Callable = logit_diff,
    chunk: int = 1,
) -> Callable[[Nodes], Nodes]:
    """grad_fn for `integrated_gradients` at one layer: given node values [steps, batch, pos, ...] it
    splices them in (the other layers untouched), runs the rest of the model and returns the gradient of
    the summed metric with respect to them, for every step (``chunk`` steps per pass: a forward pass with
    gradients costs ~0.4 GB plus ~2 MB per token here, so this bounds memory)."""

    def grad_fn(points: Nodes) -> Nodes:
        steps, batch = points["latents"].shape[:2]
        out = {"latents": torch.empty_like(points["latents"]), "error": torch.empty_like(points["error"])}
        for start in range(0, steps, chunk):
            with torch.enable_grad():
                nodes = {name: t[start : start + chunk].detach().flatten(0, 1).requires_grad_(True) for name, t in points.items()}
                n = len(nodes["latents"]) // batch
                resid = torch.cat([bos.repeat(n, 1, 1), splice(saes[layer], nodes)], dim=1)
                logits = final_logits(model, resid, layer)
                metric = metric_fn(logits[:, None], data["correct"].repeat(n), data["wrong"].repeat(n)).sum()
                g_lat, g_err = torch.autograd.grad(metric, [nodes["latents"], nodes["error"]])
            out["latents"][start : start + chunk] = g_lat.unflatten(0, (n, batch))
            out["error"][start : start + chunk] = g_err.unflatten(0, (n, batch))
        return out

    return grad_fn


def ig_scores(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    clean: dict[int, Nodes],
    patch: dict[int, Nodes],
    ig_fn: Callable = integrated_gradients,
    steps: int = 10,
    metric_fn: Callable = logit_diff,
) -> dict[int, Tensor]:
    """Integrated gradients layer by layer, as in the paper: one layer's nodes move along the path
    clean → patch while the other layers are computed normally."""
    scores = {}
    for layer in tqdm(saes, desc=f"integrated gradients ({steps} steps)", mininterval=1.0):
        with torch.no_grad():
            # BOS is position 0 and attends only to itself: its residual doesn't depend on the prompt
            _, cache = model.run_with_cache(
                data["clean"][:, :1], stop_at_layer=layer + 1, names_filter=f"blocks.{layer}.hook_resid_pre"
            )
        bos = cache[f"blocks.{layer}.hook_resid_pre"]
        grad_fn = layer_grad_fn(model, saes, data, layer, bos, metric_fn)
        scores[layer] = ig_fn(grad_fn, clean[layer], patch[layer], steps)
    return scores


def patching_effects(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    clean: dict[int, Nodes],
    patch: dict[int, Nodes],
    nodes: list[tuple[int, int]],
    metric_fn: Callable = logit_diff,
) -> Float[Tensor, " n_nodes"]:
    """True activation patching: the change of the mean metric when ONE node (layer, index; index d_sae
    = the error node) takes its corrupted value at every position and everything downstream is recomputed.
    One batched forward pass per layer (from that layer on)."""
    batch = len(data["clean"])
    effects = torch.zeros(len(nodes))
    with torch.no_grad():
        _, cache = model.run_with_cache(data["clean"], stop_at_layer=max(saes) + 1, names_filter=lambda name: "resid_pre" in name)
        for layer in tqdm(sorted({layer for layer, _ in nodes}), desc="activation patching", mininterval=1.0):
            params, c, p = saes[layer], clean[layer], patch[layer]
            which = [i for i, (node_layer, _) in enumerate(nodes) if node_layer == layer]
            resid = cache[f"blocks.{layer}.hook_resid_pre"].repeat(len(which) + 1, 1, 1)  # copy 0: nothing patched
            for copy, i in enumerate(which, start=1):
                index, rows = nodes[i][1], slice(copy * batch, (copy + 1) * batch)
                if index == params["W_dec"].shape[0]:
                    resid[rows, 1:] += p["error"] - c["error"]
                else:
                    resid[rows, 1:] += (p["latents"][..., index] - c["latents"][..., index])[..., None] * params["W_dec"][index]
            n = len(which) + 1
            m = metric_fn(final_logits(model, resid, layer)[:, None], data["correct"].repeat(n), data["wrong"].repeat(n))
            m = m.view(n, batch).mean(1)
            effects[which] = m[1:] - m[0]
    return effects


def node_means(clean: dict[int, Nodes]) -> dict[int, Nodes]:
    """Each node's mean activation over the clean prompts, per position (what mean ablation substitutes)."""
    return {layer: {name: t.mean(0) for name, t in nodes.items()} for layer, nodes in clean.items()}


def circuit_metrics(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    keeps: list[dict[int, Tensor]],
    means: dict[int, Nodes],
    ablate_fn: Callable = mean_ablate,
    metric_fn: Callable = logit_diff,
) -> Float[Tensor, " circuits"]:
    """Mean metric on the clean prompts for each circuit in ``keeps``, every node outside it mean-ablated at
    every layer. All circuits run in one batched forward pass (one copy of the prompts per circuit)."""
    batch, n = len(data["clean"]), len(keeps)

    def edit(layer: int, nodes: Nodes) -> Nodes:
        parts = [
            ablate_fn({name: t[c * batch : (c + 1) * batch] for name, t in nodes.items()}, means[layer], keeps[c][layer])
            for c in range(n)
        ]
        return {name: torch.cat([part[name] for part in parts]) for name in nodes}

    logits, _ = run_with_saes(model, saes, data["clean"].repeat(n, 1), edit=edit)
    return metric_fn(logits[:, None], data["correct"].repeat(n), data["wrong"].repeat(n)).view(n, batch).mean(1)


def faithfulness_curve(
    model: HookedTransformer,
    saes: dict,
    data: dict,
    scores: dict[int, Tensor],
    means: dict[int, Nodes],
    sizes: list[int],
    select_fn: Callable = top_nodes,
    ablate_fn: Callable = mean_ablate,
) -> dict[str, object]:
    """m(C) for the top-n circuits and m(M − C) for their complements, plus m(∅) (everything ablated) and
    m(M) (nothing ablated: the full model, since x̂ + ε = x)."""
    everything = {layer: torch.ones(len(s), dtype=torch.bool) for layer, s in scores.items()}
    nothing = {layer: torch.zeros(len(s), dtype=torch.bool) for layer, s in scores.items()}
    circuits = [select_fn(scores, n) for n in sizes]
    complements = [{layer: ~keep for layer, keep in circuit.items()} for circuit in circuits]
    m = circuit_metrics(model, saes, data, [everything, nothing, *circuits, *complements], means, ablate_fn)
    return {
        "sizes": sizes,
        "m_full": m[0].item(),
        "m_empty": m[1].item(),
        "m_circuit": m[2 : 2 + len(sizes)],
        "m_complement": m[2 + len(sizes) :],
    }


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
        reference=logit_diff,
        atol=1e-6,
        hint="one number per prompt: logits at the LAST position, the correct token's minus the wrong token's",
    ),
    Exercise(
        function="attribution",
        points=2,
        cases=lambda: [
            Case(_nodes_case(10, 3, 4, 12, 5), "3 prompts, 4 positions, 12 latents, d_model 5"),
            Case(_nodes_case(11, 5, 2, 20, 8), "5 prompts, 2 positions, 20 latents, d_model 8"),
        ],
        reference=attribution,
        atol=1e-5,
        hint="grad · (patch − clean); per latent sum over positions, for the error node also over d_model; "
        "then the mean over prompts; the error node's score goes LAST",
    ),
    Exercise(
        function="integrated_gradients",
        points=3,
        cases=lambda: [
            Case(_ig_case(20, 3, 4, 12, 5, 4), "4 steps on a toy non-linear metric"),
            Case(_ig_case(21, 2, 3, 10, 6, 10), "10 steps on a toy non-linear metric"),
            Case(_ig_case(22, 2, 2, 8, 4, 1), "1 step (must equal attribution patching)"),
        ],
        reference=integrated_gradients,
        probe="utils.chapter04a:ig_probe",
        atol=1e-5,
        hint="alphas k/steps for k = 0..steps−1 (clean included, patch excluded); points = clean + α(patch − clean) "
        "stacked on a new first dim; average grad_fn's gradients over the steps, then `attribution`",
    ),
    Exercise(
        function="top_nodes",
        points=2,
        cases=lambda: [
            Case(_scores_case(30, [10, 7, 12], 5), "3 layers (10, 7, 12 nodes), keep 5"),
            Case(_scores_case(31, [6, 9], 8), "2 layers (6, 9 nodes), keep 8"),
            Case(_scores_case(32, [4, 5, 6], 0), "keep 0 nodes", hidden=True),
        ],
        reference=top_nodes,
        atol=0,
        rtol=0,
        hint="rank ALL nodes of all layers together by |score| and keep the n largest; "
        "return one boolean mask per layer, with the same keys as scores",
    ),
    Exercise(
        function="mean_ablate",
        points=2,
        cases=lambda: [
            Case(_ablate_case(40, 3, 4, 10, 5, keep_error=False), "error node ablated, ~40% of latents kept"),
            Case(_ablate_case(41, 2, 3, 16, 6, keep_error=True), "error node kept, ~40% of latents kept"),
        ],
        reference=mean_ablate,
        atol=1e-6,
        hint="kept nodes keep their activation, the others take the mean (same for every prompt); "
        "keep[-1] is the error node; both outputs keep the shape of acts",
    ),
    Exercise(
        function="faithfulness",
        points=1,
        cases=lambda: [
            Case((torch.tensor([0.5, 1.0, 2.0, 3.5]), 0.5, 3.5), "m(∅) = 0.5, m(M) = 3.5"),
            Case((torch.tensor([-1.0, 0.2, 1.7]), -2.0, 1.5), "m(∅) = −2, m(M) = 1.5"),
        ],
        reference=faithfulness,
        atol=1e-6,
        hint="(m(C) − m(∅)) / (m(M) − m(∅)): 0 for the empty circuit, 1 for the full model",
    ),
]

check = Checks(EXERCISES)
