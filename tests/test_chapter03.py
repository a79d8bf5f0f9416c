"""Chapter 03's checks beyond the common rules of tests/test_exercises.py: the dataset's properties,
the model's IOI behaviour, identities the exercises rely on, and GPT-2 small's circuit (online only)."""

from __future__ import annotations

import functools

import pytest
import torch

from utils import chapter03
from utils.grading.checks import CheckFailed
from utils.models import hub_reachable, load_model
from utils.references import chapter03 as ref03


@pytest.fixture(scope="module")
def data(model):
    return chapter03.ioi_dataset(model, 16, seed=0)


def test_names_are_single_tokens_and_orders_are_balanced(model, data):
    for key in ("io", "s", "c"):
        for token in data[key]:
            assert len(model.to_tokens(model.tokenizer.decode(token), prepend_bos=False)[0]) == 1
    assert data["abba"].sum() == len(data["abba"]) // 2
    assert (data["io_pos"] < data["s1_pos"]).tolist() == data["abba"].tolist()  # ABBA: IO comes first
    assert len({tuple(t) for t in data["clean"][:, :1].tolist()}) == 1  # one BOS, same length everywhere


def test_abc_prompts_have_three_distinct_names_and_differ_only_at_s2(data):
    assert ((data["io"] != data["s"]) & (data["s"] != data["c"]) & (data["io"] != data["c"])).all()
    differs = data["clean"] != data["corrupt"]
    assert (differs.sum(1) == 1).all()
    assert (differs.float().argmax(1) == data["s2_pos"]).all()
    rows = torch.arange(len(data["clean"]))
    assert (data["clean"][rows, data["io_pos"]] == data["io"]).all()
    assert (data["clean"][rows, data["s1_pos"]] == data["s"]).all()
    assert (data["clean"][rows, data["s2_pos"]] == data["s"]).all()
    assert (data["corrupt"][rows, data["s2_pos"]] == data["c"]).all()


def test_templates_of_different_lengths_are_refused(model):
    with pytest.raises(ValueError, match="different token lengths"):
        chapter03.ioi_dataset(model, 4, templates=[chapter03.TEMPLATES[0], "[A] and [B] met; [S] waved to"])


def test_the_model_solves_ioi_and_the_corruption_removes_it(model, data):
    clean = ref03.logit_diff(model(data["clean"]), data["io"], data["s"])
    corrupt = ref03.logit_diff(model(data["corrupt"]), data["io"], data["s"])
    assert clean.mean() > 3 and (clean > 0).float().mean() >= 0.95
    assert corrupt.mean() < 1.5


def test_direct_logit_attribution_adds_up_to_the_logit_difference(model, data):
    tokens, io, s = data["clean"][:4], data["io"][:4], data["s"][:4]
    total = ref03.logit_diff(model(tokens), io, s).mean()
    assert torch.isclose(ref03.component_dla(model, tokens, io, s).sum(), total, atol=1e-3)
    # heads alone are not everything (MLPs, embeddings, biases), but they carry most of it here
    assert 0.5 * total < ref03.head_dla(model, tokens, io, s).sum() < 1.5 * total


def test_path_patching_finds_a_name_mover_that_attribution_also_ranks_first(model, data):
    args = (model, data["clean"][:4], data["corrupt"][:4], data["io"][:4], data["s"][:4])
    to_logits = ref03.path_patch_to_logits(*args)
    layer, head = divmod(int(to_logits.argmin()), model.cfg.n_heads)
    attribution = ref03.attribution_patch(*args, "z").sum(1)
    assert int(attribution.argmax()) == layer * model.cfg.n_heads + head


def test_check_prints_a_tick_or_raises_one_line(capsys):
    chapter03.check.duplicate_token_scores(ref03.duplicate_token_scores)
    assert "✓ duplicate_token_scores" in capsys.readouterr().out
    with pytest.raises(CheckFailed) as failure:
        chapter03.check.logit_diff(lambda logits, io, s: logits[:, -1, 0])
    assert failure.value._render_traceback_()[0].count("\n") == 0


@pytest.mark.skipif(not hub_reachable(), reason="GPT-2 small needs the Hugging Face hub, which this machine cannot reach")
def test_gpt2_small_shows_the_papers_head_classes():
    """The chapter's functions on the paper's model find the paper's name movers and S-inhibition heads."""
    model = load_model("gpt2-small", verbose=False)
    data = chapter03.ioi_dataset(model, 16, seed=0, templates=chapter03.TEMPLATES[:4])
    args = (model, data["clean"], data["corrupt"], data["io"], data["s"])
    assert ref03.logit_diff(model(data["clean"]), data["io"], data["s"]).mean() > 2
    to_logits = ref03.path_patch_to_logits(*args)
    movers = {divmod(int(i), model.cfg.n_heads) for i in (-to_logits).flatten().topk(5).indices}
    assert len(movers & set(chapter03.PAPER["heads"]["name mover"])) >= 2, movers
    to_queries = ref03.path_patch_to_queries(*args, chapter03.PAPER["heads"]["name mover"])
    inhibition = {divmod(int(i), model.cfg.n_heads) for i in (-to_queries).flatten().topk(6).indices}
    assert len(inhibition & set(chapter03.PAPER["heads"]["S-inhibition"])) >= 2, inhibition


def test_head_patching_by_position_matches_one_run_per_patch(model, data):
    """The batched demo helper against the plain way: one run_with_hooks per (head, position)."""
    clean, corrupt, io, s = data["clean"][:2], data["corrupt"][:2], data["io"][:2], data["s"][:2]
    heads = [(20, 0), (23, 3)]
    got = chapter03.patch_head_positions(model, clean, corrupt, io, s, heads)
    _, clean_cache = model.run_with_cache(clean, names_filter=lambda name: name.endswith("hook_z"))
    ld_clean = ref03.logit_diff(model(clean), io, s).mean()
    ld_corrupt = ref03.logit_diff(model(corrupt), io, s).mean()
    for row, (layer, head) in enumerate(heads):
        for pos in range(clean.shape[1]):

            def patch(z, hook, layer=layer, head=head, pos=pos):
                z[:, pos, head] = clean_cache["z", layer][:, pos, head]
                return z

            logits = model.run_with_hooks(corrupt, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)])
            expected = (ref03.logit_diff(logits, io, s).mean() - ld_corrupt) / (ld_clean - ld_corrupt)
            assert abs(got[row, pos].item() - expected.item()) < 1e-3, (layer, head, pos)
    first_difference = int((clean != corrupt).float().argmax(1).min())
    assert got[:, :first_difference].abs().max() < 1e-4  # nothing differs before the corrupted name


def _frozen_heads_hook(clean_cache, corrupt_cache, sender):
    """Every head's z from the clean run, the sender's from the corrupted one (the paper's step 2)."""

    def hook(z, hook):
        z = clean_cache[hook.name].clone()
        if hook.layer() == sender[0]:
            z[:, :, sender[1]] = corrupt_cache[hook.name][:, :, sender[1]]
        return z

    return hook


def test_receiver_resid_is_a_forward_pass_with_every_head_frozen(model, data):
    """Steps (a) and (b) at END against the plain way: a clean run whose hook_z are all clean but the sender's."""
    clean, corrupt = data["clean"][:2], data["corrupt"][:2]
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    streams = ref03.receiver_resid(model, clean, ref03.sender_attn_out(model, clean, corrupt), 23)
    entering = "blocks.23.hook_resid_pre"
    for sender in [(20, 0), (5, 3), (22, 8)]:
        frozen_heads = _frozen_heads_hook(clean_cache, corrupt_cache, sender)
        with model.hooks(fwd_hooks=[(lambda name: name.endswith("hook_z"), frozen_heads)]):
            _, frozen = model.run_with_cache(clean, names_filter=lambda name: name == entering)
        assert torch.allclose(streams[sender], frozen[entering][:, -1], atol=1e-3), sender
    assert torch.equal(streams[23:], clean_cache[entering][:, -1].expand(7, 9, -1, -1))  # no path from later senders


def test_receiver_queries_are_the_models_own(model, data):
    _, cache = model.run_with_cache(data["clean"][:3])
    for layer, head, pos in [(23, 3, -1), (10, 7, 4)]:
        q = ref03.receiver_queries(model, cache["resid_pre", layer][:, pos], layer, head, pos % data["clean"].shape[1])
        assert torch.allclose(q, cache["rot_q", layer][:, pos, head], atol=1e-4)


def test_path_patch_to_queries_is_the_path_done_with_hooks(model, data):
    """The whole path against two plain runs per sender: (1) every head frozen but the sender, MLPs recomputed,
    keeping the receivers' queries at END; (2) a clean run with those queries, everything else frozen (every other
    head's z, every MLP's output, the receivers' keys and values), read at the logits."""
    clean, corrupt, io, s = data["clean"][:2], data["corrupt"][:2], data["io"][:2], data["s"][:2]
    receivers = [(23, 3), (26, 1)]
    got = ref03.path_patch_to_queries(model, clean, corrupt, io, s, receivers)
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    ld_clean = ref03.logit_diff(model(clean), io, s).mean()
    ld_corrupt = ref03.logit_diff(model(corrupt), io, s).mean()
    layers = {layer for layer, _ in receivers}
    is_z, clean_of = (lambda name: name.endswith("hook_z")), (lambda act, hook: clean_cache[hook.name])

    def keep(q, hook, queries):
        queries[hook.layer()] = q[:, -1].clone()

    def patched_queries(q, hook, queries):
        q = clean_cache[hook.name].clone()
        for layer, head in receivers:
            if layer == hook.layer():
                q[:, -1, head] = queries[layer][:, head]
        return q

    def only_receivers_move(z, hook):  # every z clean but the receivers' at END, recomputed from their new queries
        out = clean_cache[hook.name].clone()
        for layer, head in receivers:
            if layer == hook.layer():
                out[:, -1, head] = z[:, -1, head]
        return out

    for sender in [(20, 0), (24, 2), (12, 5)]:
        queries = {}
        hooks = [(is_z, _frozen_heads_hook(clean_cache, corrupt_cache, sender))]
        hooks += [(f"blocks.{layer}.attn.hook_rot_q", functools.partial(keep, queries=queries)) for layer in layers]
        with model.hooks(fwd_hooks=hooks):
            model(clean)
        hooks = [(lambda name: name.endswith("hook_mlp_out"), clean_of), (is_z, only_receivers_move)]
        hooks += [(f"blocks.{layer}.attn.hook_{name}", clean_of) for layer in layers for name in ("rot_k", "v")]
        hooks += [(f"blocks.{layer}.attn.hook_rot_q", functools.partial(patched_queries, queries=queries)) for layer in layers]
        with model.hooks(fwd_hooks=hooks):
            ld = ref03.logit_diff(model(clean), io, s).mean()
        expected = (ld - ld_clean) / (ld_clean - ld_corrupt)
        assert abs(got[sender].item() - expected.item()) < 2e-3, sender
    assert got[26:].abs().max() < 1e-4  # a sender in the last receiver's layer or after it reaches none


def test_the_diagrams_draw():
    import matplotlib.pyplot as plt

    ax = chapter03.draw_path_patching([(23, 3), (29, 1)], (10, 11, 12, 13))
    assert "23.3, 29.1" in ax.get_title()
    found = {"name mover": [(23, 3), (23, 0)], "S-inhibition": [(20, 0)], "induction": [(17, 4)], "previous token": [(16, 0)]}
    arrows = [("S-inhibition", "name mover", "to their queries", True), ("name mover", "logits", "", True),
              ("induction", "S-inhibition", "", False), ("negative name mover", "logits", "", True)]  # no such box: skipped
    ax = chapter03.draw_circuit(found, 30, arrows, paper=chapter03.PAPER["heads"], title="t")
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "name movers\n23.3, 23.0\nGPT-2: 9.9, 9.6, 10.0" in texts and "negative" not in texts
    plt.close("all")


def test_the_path_patching_steps_work_on_a_model_like_gpt2():
    """No rotary embeddings, no grouped keys, LayerNorm, biases (MODEL_NAME = "gpt2-small"): a small random model."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=3, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=60, n_ctx=16,
                                  act_fn="gelu_new", normalization_type="LN", seed=0)
    model = HookedTransformer(cfg)
    for name, param in model.named_parameters():
        if name.endswith(("b_O", "b_Q")):
            torch.nn.init.normal_(param, std=0.1)  # biases that matter, as GPT-2's do
    clean = torch.randint(0, 60, (2, 7))
    corrupt = clean.clone()
    corrupt[:, 3] = (corrupt[:, 3] + 1) % 60
    io, s = torch.tensor([1, 2]), torch.tensor([3, 4])
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupt_cache = model.run_with_cache(corrupt)
        streams = ref03.receiver_resid(model, clean, ref03.sender_attn_out(model, clean, corrupt), 2)
        frozen_heads = _frozen_heads_hook(clean_cache, corrupt_cache, (0, 1))
        with model.hooks(fwd_hooks=[(lambda name: name.endswith("hook_z"), frozen_heads)]):
            _, frozen = model.run_with_cache(clean, names_filter=lambda name: name == "blocks.2.hook_resid_pre")
        assert torch.allclose(streams[0, 1], frozen["blocks.2.hook_resid_pre"][:, -1], atol=1e-5)
        q = ref03.receiver_queries(model, clean_cache["resid_pre", 2][:, -1], 2, 3, 6)
        assert torch.allclose(q, clean_cache["q", 2][:, -1, 3], atol=1e-5)
        got = ref03.path_patch_to_queries(model, clean, corrupt, io, s, [(2, 3)])
    assert got.shape == (3, 4) and got[:2].abs().max() > 0 and got[2:].abs().max() < 1e-5
