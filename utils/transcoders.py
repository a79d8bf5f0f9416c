"""Per-layer transcoders for SmolLM2's MLPs: a sparse layer trained to map an MLP's input to its output.

A transcoder (Dunefsky et al. 2024, arXiv 2406.11944) reads what an MLP reads — here
``blocks.{l}.ln2.hook_normalized``, the RMS-normalised residual stream (the norm's weights are folded into
the MLP) — and predicts what it writes, ``blocks.{l}.hook_mlp_out``, through a TopK latent layer (Gao et
al. 2024). Replacing every MLP of a band of layers by its transcoder is the replacement model behind the
attribution graphs of Ameisen et al. 2025 ("Circuit Tracing", `utils/attribution_graph.py`).

Training reuses chapter 02's pieces — `topk_activation`, `auxk_loss` and `sae_training_step` (Adam, decoder
rows kept at unit norm) — but not its `train_sae` loop, which reconstructs one fixed tensor: a band of 15
layers over 100k tokens would be 3.5 GB of float16 pairs, more than a learner's machine should hold. So
`train_transcoders` streams: one forward pass of the model over a chunk of sequences yields every band
layer's (input, output) pairs, each layer's transcoder takes ``passes`` shuffled passes over them, and the
chunk is dropped. Nothing is written to disk but the trained tensors.

SAELens 6 has transcoder classes (``Transcoder``, ``SkipTranscoder``) with ReLU or JumpReLU latents, not
TopK: the files here keep SAELens's tensor names (``W_enc`` [d_in, d_sae], ``b_enc``, ``W_dec`` [d_sae,
d_out], ``b_dec`` [d_out]) in one safetensors file per band, with the recipe and the metrics beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils.paths import cache_dir, computing
from utils.references import chapter05 as ref
from utils.references.chapter02 import auxk_loss, firing_stats, sae_training_step, topk_activation, variance_explained
from utils.sae.base import Params, decode_sparse, init_params

Transcoders = dict[int, Params]  # layer -> its transcoder's tensors
TRAINER_VERSION = 1  # part of the cache key: raise it when the trainer's numerics change


def input_hook(layer: int) -> str:
    return f"blocks.{layer}.ln2.hook_normalized"


def output_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


@dataclass(frozen=True)
class TranscoderConfig:
    """One band of per-layer TopK transcoders and how they are trained (one object, as SAELens keeps).

    ``layers``: the band (every MLP from ``layers[0]`` up is replaced; the residual stream entering the band is
    the graph's input). Data: ``n_seqs`` corpus sequences of ``seq_len`` tokens, read ``chunk_seqs`` at a time;
    each chunk's pairs are trained on ``passes`` times in shuffled batches of ``batch_size`` (so a layer takes
    ``n_seqs·(seq_len − 1)·passes / batch_size`` steps). The last ``held_out_seqs`` sequences are never trained
    on: the metrics are measured there. Rows whose MLP output is more than ``max_norm_ratio`` × the median norm
    (attention-sink positions) are left out of training.
    """

    layers: tuple[int, ...] = tuple(range(15, 30))
    d_sae: int = 2304
    k: int = 32
    n_seqs: int = 576
    seq_len: int = 128
    chunk_seqs: int = 64
    passes: int = 8
    batch_size: int = 1024
    lr: float = 3e-3
    aux_coeff: float = 1 / 32
    dead_window: int = 100
    held_out_seqs: int = 32
    max_norm_ratio: float = 10.0
    center_init: bool = True
    seed: int = 0

    @property
    def steps(self) -> int:
        per_chunk = self.passes * (self.chunk_seqs * (self.seq_len - 1) // self.batch_size)
        return per_chunk * math.ceil(self.n_seqs / self.chunk_seqs)


# ---------------------------------------------------------------------------------------------
# The transcoder


def run_transcoder(params: Params, x: Float[Tensor, "... d_in"], k: int) -> tuple[Tensor, Tensor]:
    """(latents, predicted MLP output): chapter 05's exercise `transcoder_forward` (no input bias: b_dec lives in
    the output space)."""
    return ref.transcoder_forward(params, x, k)


def transcoder_loss(
    params: Params, x: Float[Tensor, "batch d_in"], y: Float[Tensor, "batch d_out"], k: int, dead: Tensor, aux_coeff: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(‖y − ŷ‖² + aux_coeff · AuxK on the dead latents, latents, ŷ): chapter 02's TopK objective with a target."""
    pre = x @ params["W_enc"] + params["b_enc"]
    acts = topk_activation(pre, k)
    y_hat = decode_sparse(params, acts, k)
    loss = (y - y_hat).pow(2).sum(-1).mean()
    if dead.any():
        every = torch.ones(int(dead.sum()), dtype=torch.bool, device=x.device)
        loss = loss + aux_coeff * auxk_loss((y - y_hat).detach(), pre[:, dead], params["W_dec"][dead], every, y.shape[1] // 2)
    return loss, acts, y_hat


# ---------------------------------------------------------------------------------------------
# Data: MLP input/output pairs, a chunk of sequences at a time


def mlp_pairs(
    model: HookedTransformer, tokens: Int[Tensor, "seq pos"], layers: tuple[int, ...], batch_size: int = 16
) -> dict[int, tuple[Tensor, Tensor]]:
    """layer -> (MLP inputs, MLP outputs), float32 [seq·(pos − 1), d_model] each: every position but BOS."""
    names = {input_hook(layer) for layer in layers} | {output_hook(layer) for layer in layers}
    parts: dict[str, list[Tensor]] = {name: [] for name in names}
    with torch.no_grad():
        for start in range(0, len(tokens), batch_size):
            _, cache = model.run_with_cache(
                tokens[start : start + batch_size], names_filter=lambda name: name in names, stop_at_layer=max(layers) + 1
            )
            for name in names:
                parts[name].append(cache[name][:, 1:].flatten(0, 1).float())
    return {layer: (torch.cat(parts[input_hook(layer)]), torch.cat(parts[output_hook(layer)])) for layer in layers}


def _drop_sinks(x: Tensor, y: Tensor, max_norm_ratio: float) -> tuple[Tensor, Tensor]:
    norms = y.norm(dim=-1)
    keep = norms <= max_norm_ratio * norms.median()
    return x[keep], y[keep]


# ---------------------------------------------------------------------------------------------
# Training


def init_transcoder(x: Float[Tensor, "n d_in"], y: Float[Tensor, "n d_out"], d_sae: int, seed: int, center: bool) -> Params:
    """Unit-norm random decoder rows, the encoder their transpose (Gao et al.'s init; d_in = d_out here), b_dec the
    outputs' mean; with ``center``, b_enc = −mean(x) W_enc, so every latent starts centred on the inputs."""
    params = init_params(y.shape[1], d_sae, y.mean(0), seed)
    if x.shape[1] != y.shape[1]:
        params["W_enc"] = torch.nn.functional.normalize(
            torch.randn(x.shape[1], d_sae, generator=torch.Generator().manual_seed(seed)), dim=0
        )
    if center:
        params["b_enc"] = -(x.mean(0) @ params["W_enc"])
    return params


def train_transcoders(
    model: HookedTransformer, cfg: TranscoderConfig, progress: bool = True
) -> tuple[Transcoders, dict[int, dict[str, float]]]:
    """Train ``cfg``'s band of transcoders on one stream of corpus chunks (see the module's docstring).

    Returns (layer -> tensors, layer -> held-out metrics: ``variance_explained`` of the MLP output, ``l0``,
    ``dead_fraction``). Each step is chapter 02's `sae_training_step`; the learning rate is constant, then
    decays linearly over the last 20 % of the steps; a latent that has not fired for ``dead_window`` steps gets
    the AuxK gradient.
    """
    from utils.data import token_sequences

    tokens = token_sequences(model, cfg.seq_len, cfg.n_seqs + cfg.held_out_seqs)
    train_tokens, held_tokens = tokens[: cfg.n_seqs], tokens[cfg.n_seqs :]
    generator = torch.Generator().manual_seed(cfg.seed)
    params: Transcoders = {}
    optimizers: dict[int, torch.optim.Optimizer] = {}
    schedules = {}
    since_fired = {layer: torch.zeros(cfg.d_sae, dtype=torch.long) for layer in cfg.layers}
    total = cfg.steps
    decay = lambda step: min(1.0, (total - step) / max(1, 0.2 * total))  # noqa: E731
    bar = tqdm(
        total=total * len(cfg.layers),
        desc=f"transcoders, layers {cfg.layers[0]}–{cfg.layers[-1]}",
        disable=not progress,
        mininterval=1.0,
        unit="step",
    )
    for start in range(0, cfg.n_seqs, cfg.chunk_seqs):
        pairs = mlp_pairs(model, train_tokens[start : start + cfg.chunk_seqs], cfg.layers)
        for layer in cfg.layers:
            x, y = _drop_sinks(*pairs[layer], cfg.max_norm_ratio)
            if layer not in params:
                p = init_transcoder(x, y, cfg.d_sae, cfg.seed + layer, cfg.center_init)
                params[layer] = {name: t.requires_grad_(True) for name, t in p.items()}
                optimizers[layer] = torch.optim.Adam(params[layer].values(), lr=cfg.lr)
                schedules[layer] = torch.optim.lr_scheduler.LambdaLR(optimizers[layer], decay)
            for _ in range(cfg.passes):
                for idx in torch.randperm(len(x), generator=generator).split(cfg.batch_size):
                    if len(idx) < cfg.batch_size or schedules[layer].last_epoch >= total:
                        continue
                    dead = since_fired[layer] >= cfg.dead_window
                    loss_fn = lambda p, xb, yb=y[idx], dead=dead: transcoder_loss(p, xb, yb, cfg.k, dead, cfg.aux_coeff)  # noqa: E731
                    _, acts, _ = sae_training_step(params[layer], optimizers[layer], x[idx], loss_fn)
                    schedules[layer].step()
                    since_fired[layer] = torch.where((acts != 0).any(0), 0, since_fired[layer] + 1)
                    bar.update(1)
        del pairs
    bar.close()
    trained = {layer: {name: t.detach().clone() for name, t in p.items()} for layer, p in params.items()}
    return trained, transcoder_metrics(model, trained, cfg.k, held_tokens)


def transcoder_metrics(
    model: HookedTransformer, transcoders: Transcoders, k: int, tokens: Int[Tensor, "seq pos"]
) -> dict[int, dict[str, float]]:
    """Per layer, on ``tokens`` (all positions but BOS, sinks included): the fraction of the MLP output's variance
    the transcoder explains, its L0 and the fraction of latents that never fire there."""
    pairs = mlp_pairs(model, tokens, tuple(transcoders))
    out = {}
    with torch.no_grad():
        for layer, (x, y) in pairs.items():
            acts, y_hat = run_transcoder(transcoders[layer], x, k)
            stats = firing_stats(acts)
            out[layer] = {
                "variance_explained": round(variance_explained(y, y_hat), 4),
                "l0": round(stats["l0"], 2),
                "dead_fraction": round(stats["dead_fraction"], 4),
            }
    return out


# ---------------------------------------------------------------------------------------------
# Cached on disk, like chapter 02's SAE


def _folder(model: HookedTransformer, cfg: TranscoderConfig) -> Path:
    recipe = asdict(cfg)
    key = json.dumps([model.cfg.model_name, recipe, TRAINER_VERSION])
    band = f"{cfg.layers[0]}-{cfg.layers[-1]}"
    return cache_dir() / "transcoders" / f"layers{band}-topk{cfg.k}-{cfg.d_sae}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def load_transcoders(folder: Path) -> tuple[Transcoders, dict]:
    from safetensors.torch import load_file

    flat = load_file(folder / "transcoders.safetensors")
    info = json.loads((folder / "cfg.json").read_text())
    transcoders = {
        layer: {name: flat[f"{layer}.{name}"] for name in ("W_enc", "b_enc", "W_dec", "b_dec")} for layer in info["layers"]
    }
    return transcoders, info


def pretrained_transcoders(
    model: HookedTransformer, cfg: TranscoderConfig | None = None, verbose: bool = True
) -> tuple[Transcoders, dict]:
    """``cfg``'s transcoders (default: the chapter's band), trained once and then read from disk.

    Returns (layer -> tensors, info): info holds the recipe, ``metrics`` (per layer, held out) and
    ``train_seconds``."""
    from safetensors.torch import save_file

    cfg = cfg or TranscoderConfig()
    folder = _folder(model, cfg)
    with computing(folder):
        if not (folder / "cfg.json").exists():
            start = time.perf_counter()
            transcoders, metrics = train_transcoders(model, cfg, progress=verbose)
            seconds = time.perf_counter() - start
            tmp = Path(tempfile.mkdtemp(dir=folder.parent if folder.parent.exists() else None, prefix=".tmp-"))
            folder.parent.mkdir(parents=True, exist_ok=True)
            save_file(
                {f"{layer}.{name}": t.contiguous() for layer, p in transcoders.items() for name, t in p.items()},
                tmp / "transcoders.safetensors",
            )
            recipe = asdict(cfg)
            info = {
                **recipe,
                "model_name": model.cfg.model_name,
                "input_hook": input_hook(0).replace(".0.", ".{layer}."),
                "output_hook": output_hook(0).replace(".0.", ".{layer}."),
                "metrics": {str(k): v for k, v in metrics.items()},
                "train_seconds": round(seconds, 1),
                "steps_per_layer": cfg.steps,
            }
            (tmp / "cfg.json").write_text(json.dumps(info, indent=2))
            try:
                tmp.rename(folder)
            except OSError:
                shutil.rmtree(tmp)
            if verbose:
                print(f"Trained and cached {len(transcoders)} transcoders in {seconds:.0f} s: {folder}")
    return load_transcoders(folder)


# ---------------------------------------------------------------------------------------------
# The model running on its transcoders


def replacement_hooks(transcoders: Transcoders, k: int) -> list[tuple[str, object]]:
    """Forward hooks that replace every band MLP's output by its transcoder's prediction (all at once; BOS kept)."""
    inputs: dict[int, Tensor] = {}

    def keep_input(x, hook, layer):
        inputs[layer] = x
        return x

    def replace(out, hook, layer):
        replaced = run_transcoder(transcoders[layer], inputs[layer], k)[1]
        return torch.cat([out[:, :1], replaced[:, 1:]], dim=1)

    hooks = []
    for layer in transcoders:
        hooks.append((input_hook(layer), lambda x, hook, layer=layer: keep_input(x, hook, layer)))
        hooks.append((output_hook(layer), lambda out, hook, layer=layer: replace(out, hook, layer)))
    return hooks


def replaced_ce_losses(
    model: HookedTransformer, transcoders: Transcoders, k: int, tokens: Int[Tensor, "seq pos"], batch_size: int = 2
) -> dict[str, float]:
    """Next-token CE loss: clean; with every band MLP replaced by its transcoder at once; with every band MLP's
    output zero-ablated (both after BOS); the CE loss recovered, (zero − replaced) / (zero − clean); and the
    paper's top-token test (Ameisen et al. 2025, "From Cross-Layer Transcoder to Replacement Model"): on the
    tokens the model predicts correctly with a probability below 0.8 (``top1_tokens`` of them), the fraction
    where the replaced model's most likely token is the model's (``top1_agreement``).

    ``batch_size`` 2: each [batch, 128, 49,152] float logits tensor is 50 MB, and a batch holds three at once
    (logits, their log-softmax, their softmax); at 8 the chapter's kernel passed 1.5 GB here (bench/chapters.py)."""
    from transformer_lens.utils import lm_cross_entropy_loss

    def zero(out, hook):
        return torch.cat([out[:, :1], torch.zeros_like(out[:, 1:])], dim=1)

    zero_hooks = [(output_hook(layer), zero) for layer in transcoders]
    totals = {"clean": 0.0, "replaced": 0.0, "zero": 0.0}
    agree, eligible = 0, 0
    with torch.no_grad():
        for start in range(0, len(tokens), batch_size):
            batch = tokens[start : start + batch_size]
            weight = len(batch) / len(tokens)
            logits = model(batch)
            totals["clean"] += weight * lm_cross_entropy_loss(logits, batch).item()
            probs, top = logits[:, :-1].softmax(-1).max(-1)
            hard = (top == batch[:, 1:]) & (probs < 0.8)  # right, but not sure: the paper's "interesting" tokens
            del logits, probs
            logits = model.run_with_hooks(batch, fwd_hooks=replacement_hooks(transcoders, k))
            totals["replaced"] += weight * lm_cross_entropy_loss(logits, batch).item()
            agree += int((logits[:, :-1].argmax(-1) == top)[hard].sum())
            eligible += int(hard.sum())
            del logits
            totals["zero"] += weight * model.run_with_hooks(batch, return_type="loss", fwd_hooks=zero_hooks).item()
    totals["ce_recovered"] = (totals["zero"] - totals["replaced"]) / (totals["zero"] - totals["clean"])
    totals["top1_agreement"] = agree / max(eligible, 1)
    totals["top1_tokens"] = eligible
    return totals
