"""Chapter 03's checks beyond the common rules of tests/test_exercises.py: the dataset's properties,
the model's IOI behaviour, identities the exercises rely on, and GPT-2 small's circuit (online only)."""

from __future__ import annotations

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
