"""Chapter 02's pieces beyond the common rules of tests/test_exercises.py: the offline corpus, the
activation cache, SAELens's on-disk format, resampling, JumpReLU's custom backward, the trainer (the
chapter's own loop, which the library runs), the training check's data, steering."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from utils import chapter02, data
from utils.grading.wire import case_to_wire
from utils.references import chapter02 as ref02
from utils.sae import jumprelu, saelens
from utils.sae import metrics as sae_metrics_mod
from utils.sae import model as sae_model
from utils.sae import pretrained as sae_pretrained
from utils.sae import training as sae_training
from utils.sae.base import SAEConfig
from utils.sae.gated import Gated
from utils.sae.model import ARCHITECTURES
from utils.sae.relu import ReLU
from utils.sae.topk import TopK

EXERCISES = {exercise.function: exercise for exercise in chapter02.EXERCISES}

# SAELens 6.54.12 (sae_lens/saes/sae.py `SAEConfig.to_dict`, topk_sae.py, jumprelu_sae.py, gated_sae.py;
# constants.py: SAE_CFG_FILENAME = "cfg.json", SAE_WEIGHTS_FILENAME = "sae_weights.safetensors")
SAELENS_CFG_FIELDS = {
    "d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations", "reshape_activations", "metadata",
    "architecture",
}
SAELENS_TOPK_FIELDS = {"k", "rescale_acts_by_decoder_norm"}
SAELENS_WEIGHTS = {
    "standard": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "topk": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "jumprelu": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"},
    "gated": {"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"},
}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a test that must run offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_corpus_is_found_offline_and_deterministic(model, no_network):
    files = data.corpus_files()
    assert len(files) >= 240 and files == sorted(files)
    first = data.token_sequences(model, seq_len=32, n_seqs=5)
    data._speech_tokens.cache_clear()
    again = data.token_sequences(model, seq_len=32, n_seqs=3)
    assert first.shape == (5, 32) and first.dtype == torch.long
    assert torch.equal(first[:3], again)  # more sequences asked for: the first ones do not change
    assert (first[:, 0] == model.tokenizer.bos_token_id).all()
    assert (first[:, 1:] != model.tokenizer.bos_token_id).all()
    assert model.tokenizer.decode(first[0, 1:4]).startswith("The President")  # newest speech first


def test_activation_cache_round_trip(model, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    hook = "blocks.2.hook_resid_pre"
    acts = data.cached_activations(model, hook, seq_len=16, n_seqs=4, max_norm_ratio=None, verbose=False)
    files = list((tmp_path / "activations").glob("*.safetensors"))
    assert len(files) == 1 and acts.shape == (4 * 15, model.cfg.d_model) and acts.dtype == torch.float16
    again = data.cached_activations(model, hook, seq_len=16, n_seqs=4, max_norm_ratio=None, verbose=False)
    assert torch.equal(acts, again)
    tokens = data.token_sequences(model, 16, 4)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook)
    expected = cache[hook][:, 1:].flatten(0, 1)  # every position but BOS, read from a full forward pass
    assert torch.allclose(acts.float(), expected, rtol=2e-3, atol=2e-2)
    kept = data.cached_activations(model, hook, seq_len=16, n_seqs=4, verbose=False)  # outliers dropped
    assert torch.equal(kept, data.drop_outliers(acts, 10.0))
    spiked = acts.clone()
    spiked[7] *= 100  # an attention-sink-like outlier
    assert len(data.drop_outliers(spiked, 10.0)) == len(kept) - 1 if len(kept) == len(acts) else True
    assert not (data.drop_outliers(spiked, 10.0).float().norm(dim=-1) > 50 * acts.float().norm(dim=-1).median()).any()


def test_pretrained_sae_is_trained_once_then_loaded(model, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    small = {"d_sae": 64, "k": 4, "n_seqs": 12, "steps": 5, "verbose": False}  # 12 sequences: enough rows for one batch
    params, cfg = sae_pretrained.pretrained_sae(model, "blocks.2.hook_resid_pre", **small)
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and params["W_dec"].shape == (64, model.cfg.d_model)
    assert 0 < cfg["metadata"]["l0"] <= 4 and cfg["metadata"]["hook_name"] == "blocks.2.hook_resid_pre"

    def no_training(*args, **kwargs):
        raise AssertionError("the cached SAE was trained again")

    monkeypatch.setattr(sae_pretrained, "train_sae", no_training)
    again, _ = sae_pretrained.pretrained_sae(model, "blocks.2.hook_resid_pre", **small)
    assert all(torch.equal(params[name], again[name]) for name in params)
    assert len([p for p in (tmp_path / "saes").iterdir() if p.is_dir()]) == 1  # no temporary folder left (a lock file may be)


def _random_sae(architecture: str, d_in: int = 6, d_sae: int = 10) -> dict:
    params = sae_training.init_sae(d_in, SAEConfig(d_sae=d_sae, architecture=architecture, seed=1), torch.randn(d_in))
    if "log_threshold" in params:
        params["threshold"] = params.pop("log_threshold").exp()
    return params


@pytest.mark.parametrize(("architecture", "k"), [("relu", None), ("relu", 3), ("jumprelu", None), ("gated", None)])
def test_saelens_format_round_trip(tmp_path, architecture, k):
    params = _random_sae(architecture)
    folder = saelens.save_sae(params, tmp_path / "sae", k=k, metadata={"hook_name": "blocks.12.hook_resid_pre"})
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    cfg = json.loads((folder / "cfg.json").read_text())
    saelens_arch = "topk" if k else {"relu": "standard", "jumprelu": "jumprelu", "gated": "gated"}[architecture]
    assert cfg["architecture"] == saelens_arch
    assert set(cfg) == SAELENS_CFG_FIELDS | (SAELENS_TOPK_FIELDS if k else set())
    assert cfg["d_in"] == 6 and cfg["d_sae"] == 10 and cfg["metadata"]["hook_name"] == "blocks.12.hook_resid_pre"
    back, cfg_back = saelens.load_sae(folder)
    assert set(back) == SAELENS_WEIGHTS[saelens_arch] and cfg_back == cfg
    x = torch.randn(5, 6)
    for name in back:
        assert back[name].shape == params[name].shape
    assert torch.allclose(sae_model.run_sae(back, x, k)[1], sae_model.run_sae(params, x, k)[1], atol=1e-6)


def test_saelens_loads_our_file_when_installed(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    params = _random_sae("relu")
    x = torch.randn(7, 6)
    for k in [None, 3]:
        folder = saelens.save_sae(params, tmp_path / f"sae{k}", k=k)
        loaded = sae_lens.SAE.load_from_disk(str(folder))
        with torch.no_grad():
            assert torch.allclose(loaded.encode(x), sae_model.run_sae(params, x, k)[0], atol=1e-5)
            assert torch.allclose(loaded(x), sae_model.run_sae(params, x, k)[1], atol=1e-5)


def test_resampling_revives_dead_latents():
    case = chapter02._resample_case(3, [4, 5, 7])
    x, W_enc, b_enc, W_dec, b_dec, dead, seed = case
    before, _ = ref02.sae_forward(x, W_enc, b_enc, W_dec, b_dec)
    assert (before[:, dead] == 0).all()
    out = ref02.resample_dead_latents(*case)
    after, _ = ref02.sae_forward(x, out["W_enc"], out["b_enc"], out["W_dec"], out["b_dec"])
    assert (after[:, dead] > 0).any(0).all()
    assert torch.equal(after[:, ~dead], before[:, ~dead])


def test_training_with_resampling_leaves_fewer_dead_latents():
    g = torch.Generator().manual_seed(0)
    W = torch.nn.functional.normalize(torch.randn(8, 24, generator=g), dim=0)
    h = chapter02.toy_hidden_batch(W, 20_000, 0.05, g)
    kwargs = dict(steps=600, batch_size=256, lr=3e-3, l1_coeff=0.3, tied_init=False, init_b_enc=-0.6, dead_window=100,
                  resample_every=150)
    dead = {}
    for resample in [None, "anthropic"]:
        params, _ = sae_training.train_sae(h, SAEConfig(d_sae=32, resample=resample, **kwargs), progress=False)
        dead[resample] = sae_metrics_mod.sae_metrics(params, h[:5000])["dead_fraction"]
    assert dead[None] > 0.1
    assert dead["anthropic"] < dead[None]


def test_jumprelu_custom_backward_gives_the_ste_gradient():
    g = torch.Generator().manual_seed(0)
    threshold = (torch.rand(5, generator=g) * 0.5 + 0.2).requires_grad_(True)
    x = (threshold.detach() + (torch.rand(64, 5, generator=g) - 0.5) * 0.2).requires_grad_(True)
    weights = torch.randn(64, 5, generator=g)
    bandwidth = 0.1
    out = jumprelu.JumpReLU.apply(x, threshold, bandwidth)
    assert torch.equal(out, x * (x > threshold))
    (out * weights).sum().backward()
    inside = ((x.detach() - threshold.detach()).abs() < bandwidth / 2).float()
    assert torch.allclose(x.grad, (x.detach() > threshold.detach()) * weights)
    want = (-(threshold.detach() / bandwidth) * inside * weights).sum(0)
    assert torch.allclose(threshold.grad, want) and (threshold.grad != 0).any()
    t2 = threshold.detach().clone().requires_grad_(True)
    (jumprelu.Step.apply(x.detach(), t2, bandwidth) * weights).sum().backward()
    assert torch.allclose(t2.grad, (-(1 / bandwidth) * inside * weights).sum(0))


@pytest.mark.parametrize(("architecture", "kwargs"), [("relu", {}), ("topk", {"k": 2}), ("jumprelu", {"l0_coeff": 0.01}),
                                                      ("gated", {})])
def test_train_sae_every_architecture(architecture, kwargs):
    h = torch.randn(4000, 6) * torch.rand(4000, 1)
    cfg = SAEConfig(d_sae=12, architecture=architecture, steps=60, batch_size=128, log_every=20, **kwargs)
    params, history = sae_training.train_sae(h, cfg, progress=False)
    assert torch.allclose(params["W_dec"].norm(dim=-1), torch.ones(12), atol=1e-4)
    keys = {"step", "loss", "l0", "variance_explained", "dead_fraction", "held_out_variance_explained"}
    assert set(history) == keys and len(history["step"]) == 4 and history["held_out_variance_explained"] == []
    assert all(torch.isfinite(v).all() for v in params.values())
    metrics = sae_metrics_mod.sae_metrics(params, h, k=kwargs.get("k"))
    assert 0 <= metrics["l0"] <= 12 and metrics["variance_explained"] <= 1


def test_ce_losses_bracket_the_sae(model):
    tokens = data.token_sequences(model, 24, 2)
    params = sae_training.init_sae(model.cfg.d_model, SAEConfig(d_sae=16), torch.zeros(model.cfg.d_model))
    ce = sae_metrics_mod.ce_losses(model, tokens, "blocks.6.hook_resid_pre", params, k=4)
    assert ce["clean"] < ce["zero"]
    assert ce["ce_recovered"] == pytest.approx((ce["zero"] - ce["sae"]) / (ce["zero"] - ce["clean"]))


def test_exercise_cases_travel_through_the_grading_wire(tmp_path):
    """Cases and reference outputs must survive torch.save / torch.load(weights_only=True)."""
    for exercise in chapter02.EXERCISES:
        cases = list(exercise.cases())
        torch.save([case_to_wire(c) for c in cases], tmp_path / "cases.pt")
        torch.load(tmp_path / "cases.pt", weights_only=True)


def _toy_activations(n: int = 6000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    W = torch.nn.functional.normalize(torch.randn(6, 16, generator=g), dim=0)
    return chapter02.toy_hidden_batch(W, n, 0.1, g)


@pytest.mark.parametrize("architecture", ["relu", "topk"])
def test_the_library_trains_with_the_chapters_loop_and_held_out_logging_changes_nothing(architecture):
    """`utils.sae.training.train_sae` is the chapter's `train_sae` with the reference pieces (one text), and the
    held-out measure the chapter's run logs does not change the SAE (so chapter 02 trains pretrained_sae's SAE)."""
    h, held = _toy_activations(), _toy_activations(1000, seed=1)
    cfg = SAEConfig(d_sae=24, architecture=architecture, k=3, steps=80, batch_size=128, resample="anthropic", resample_every=20,
                    dead_window=10, tied_init=False, init_b_enc=-0.5, log_every=20)
    library, library_history = sae_training.train_sae(h, cfg, progress=False)
    relu, topk = ReLU(ref02.sae_forward, ref02.sae_loss), TopK(ref02.topk_activation, ref02.auxk_loss)
    objective = relu if architecture == "relu" else topk
    with torch.enable_grad():
        chapter, history = ref02.train_sae(h, cfg, objective, held_out=held, desc=None)
    assert all(torch.equal(library[name], chapter[name]) for name in library)
    assert {k: v for k, v in history.items() if k != "held_out_variance_explained"} == {
        k: v for k, v in library_history.items() if k != "held_out_variance_explained"}
    assert len(history["held_out_variance_explained"]) == len(history["step"])
    x_hat = objective.loss(chapter, held, cfg, torch.zeros(24, dtype=torch.bool))[2]
    assert history["held_out_variance_explained"][-1] == pytest.approx(ref02.variance_explained(held, x_hat), abs=1e-6)


def test_architectures_use_the_functions_they_are_given():
    calls = []

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return wrapped

    h = _toy_activations(2000)
    for architecture, objective in [
        ("topk", TopK(counting("topk", ref02.topk_activation), counting("auxk", ref02.auxk_loss))),
        ("jumprelu", jumprelu.JumpReLUSAE(counting("jumprelu_backward", ref02.jumprelu_backward))),
        ("gated", Gated(counting("gated", ref02.gated_forward))),
    ]:
        cfg = SAEConfig(d_sae=12, architecture=architecture, k=2, steps=30, batch_size=64, dead_window=0, log_every=10)
        with torch.enable_grad():
            params, _ = ref02.train_sae(h, cfg, objective, desc=None)
        assert torch.isfinite(params["W_dec"]).all()
    assert {"topk", "auxk", "jumprelu_backward", "gated"} <= set(calls)
    assert type(ARCHITECTURES["topk"]).__name__ == "TopK" and ARCHITECTURES["topk"].activation_fn is ref02.topk_activation


def test_only_bricken_resampling_is_offered():
    with pytest.raises(ValueError, match="anthropic"):
        SAEConfig(d_sae=4, resample="simple")


def test_training_step_keeps_unit_rows_and_resampling_resets_only_the_dead_latents_moments():
    out = chapter02.step_probe(ref02.sae_training_step, *chapter02._step_case(1, 8, 4, 6, 3))
    assert torch.allclose(out["W_dec"].norm(dim=-1), torch.ones(3, 6), atol=1e-6)
    assert not torch.equal(out["W_enc"][0], out["W_enc"][1])  # every tensor moves
    case = chapter02._resample_training_case(2, [4, 6])
    dead = case[5]
    got = chapter02.resample_probe(ref02.resample_in_training, *case)
    for moment in ["exp_avg", "exp_avg_sq"]:
        assert (got[moment]["W_enc"][:, dead] == 0).all() and (got[moment]["W_enc"][:, ~dead] != 0).all()
        assert (got[moment]["W_dec"][dead] == 0).all() and (got[moment]["b_enc"][~dead] != 0).all()
    residual = case[0][len(case[0]) // 2].clone()  # the one badly reconstructed input: its e0..e3 part is reconstructed
    residual[:4] = 0
    want = torch.nn.functional.normalize(residual, dim=0).expand(2, -1)  # (up to the two Adam steps' drift)
    assert torch.allclose(got["params"]["W_dec"][dead], want, atol=5e-3)


def test_training_checks_smollm2_rows_are_the_chapters_rows(model):
    """The check reads its SmolLM2 activations from the chapter's cache when it is there, else collects them: the same rows."""
    rows = chapter02._smollm2_rows(16)
    tokens = data.token_sequences(model, 128, 16)
    collected = data.drop_outliers(data.collect_activations(model, tokens).flatten(0, 1), 10.0)
    assert rows.shape == collected.shape and torch.allclose(rows.float(), collected.float(), atol=1e-2, rtol=1e-3)


def test_steering_with_alpha_zero_is_the_clean_run(model):
    tokens = data.token_sequences(model, 10, 2)
    W_dec = torch.nn.functional.normalize(torch.randn(4, model.cfg.d_model, generator=torch.Generator().manual_seed(0)), dim=-1)
    with torch.no_grad():
        clean = model(tokens)[:, -1].log_softmax(-1)
    assert torch.allclose(ref02.steer_with_latent(model, tokens, "blocks.12.hook_resid_pre", W_dec, 1, 0.0), clean, atol=1e-5)
    steered = ref02.steer_with_latent(model, tokens, "blocks.12.hook_resid_pre", W_dec, 1, 60.0)
    promoted = (W_dec[1] @ model.W_U).topk(10).indices
    assert (steered - clean)[:, promoted].mean() > 0  # pushing along a direction raises what it promotes


def test_sparse_decode_is_the_dense_product_in_value_and_gradient():
    """The TopK trainer sums the k decoder rows (`decode_sparse`); it must be `decode` exactly, gradients
    included, and fall back to the dense product when an activation keeps more than k latents."""
    from utils.sae.base import decode, decode_sparse

    g = torch.Generator().manual_seed(0)
    params = {"W_dec": torch.randn(40, 8, generator=g, requires_grad=True), "b_dec": torch.randn(8, generator=g)}
    pre = torch.randn(16, 40, generator=g, requires_grad=True)
    grads = []
    for fn in (decode, lambda p, a: decode_sparse(p, a, 5)):
        acts = ref02.topk_activation(pre, 5)
        out = fn(params, acts)
        (weights, pre_grad) = torch.autograd.grad((out * torch.arange(8.0)).sum(), [params["W_dec"], pre])
        grads.append((out.detach(), weights, pre_grad))
    for dense, sparse in zip(*grads):
        assert torch.allclose(dense, sparse, atol=1e-5)
    relu_acts = torch.relu(pre.detach())  # ~20 of 40 non-zero: more than k
    assert torch.allclose(decode_sparse(params, relu_acts, 5), decode(params, relu_acts))


def test_batches_refuse_data_smaller_than_one_batch():
    """Too few rows for one batch would otherwise loop forever without yielding (e.g. a small test cache)."""
    with pytest.raises(ValueError, match="cannot fill one batch"):
        next(data.batches(torch.zeros(3, 2), 4, torch.Generator()))
    assert next(data.batches(torch.zeros(4, 2), 4, torch.Generator())).shape == (4, 2)
