"""Chapter 00's checks beyond the common rules of tests/test_exercises.py."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import wrong_implementations
from utils import chapter00
from utils.grading.checks import CheckFailed
from utils.grading.engine import run_exercise
from utils.references import chapter00 as ref00

EXERCISES = {exercise.function: exercise for exercise in chapter00.EXERCISES}
WRONG = wrong_implementations("00")


def test_in_place_weight_edit_is_reported_and_undone(model):
    before = model.blocks[18].attn.W_O.sum().item()
    wrong = dict((f"{f}__{m}", impl) for f, m, impl in WRONG)["ablated_loss__edits_weights_in_place"]
    result = run_exercise(EXERCISES["ablated_loss"], wrong)
    assert "changed the model's weights" in result.message
    assert model.blocks[18].attn.W_O.sum().item() == before


def test_check_prints_a_tick_or_raises_one_line(capsys):
    chapter00.check.previous_token_scores(ref00.previous_token_scores)
    assert "✓ previous_token_scores" in capsys.readouterr().out
    with pytest.raises(CheckFailed) as failure:
        chapter00.check.previous_token_scores(lambda patterns: patterns.sum(-1))
    assert failure.value._render_traceback_()[0].count("\n") == 0
    assert "expected shape" in str(failure.value)


def test_a_huge_product_is_refused_with_a_plain_message():
    small = chapter00.GuardedCircuit(torch.ones(30, 2), torch.ones(2, 30))
    assert small.AB.shape == (30, 30)
    with pytest.raises(MemoryError, match="use the factors"):
        _ = chapter00.GuardedCircuit(torch.zeros(20_000, 2), torch.zeros(2, 20_000)).AB


def test_copying_score_check_stops_a_dense_product_of_the_full_circuit():
    def dense(circuit):
        eigenvalues = torch.linalg.eigvals(circuit.AB)
        return (eigenvalues.sum().real / eigenvalues.abs().sum()).item()

    result = run_exercise(EXERCISES["copying_score"], dense)
    assert not result.passed
    assert "full OV circuit of head 29.1" in result.message and "MemoryError" in result.message


def test_full_ov_circuit_check_asks_for_a_factored_matrix(model):
    def dense_rows(model, layer, head):
        return model.W_E[:100] @ model.W_V[layer, head] @ model.W_O[layer, head] @ model.W_U

    result = run_exercise(EXERCISES["full_ov_circuit"], dense_rows)
    assert not result.passed and "is a FactoredMatrix" in result.message


def test_positional_scores_are_the_models_own_attention_scores(model):
    """With the same residual vector at every position, the model's pre-softmax scores (hook_attn_scores) on the
    last query are the reference's, offset by offset — rotary, grouped keys, ln1 and scaling included."""
    layer, head, max_offset = 16, 4, 7
    resid = chapter00._mean_resid(layer)
    tokens = model.to_tokens(chapter00.PASSAGE)[:, : max_offset + 1]

    def constant(x, hook):
        return resid.expand_as(x).clone()

    scores = {}

    def keep(x, hook):
        scores["attn"] = x[0, head, max_offset].clone()

    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", constant),
                                                (f"blocks.{layer}.attn.hook_attn_scores", keep)])
        expected = ref00.positional_scores(model, layer, head, resid, max_offset)
    torch.testing.assert_close(scores["attn"].flip(0), expected, atol=1e-3, rtol=1e-4)


def test_composition_scores_agree_with_transformer_lens(model):
    from transformer_lens.utilities import composition_scores

    ours = ref00.composition_scores(model, 16, 0, 18, 6)
    attn = model.blocks[18].attn
    theirs = {
        "Q": composition_scores(model.OV[16, 0], attn.QK[6]).item(),
        "K": composition_scores(model.OV[16, 0], attn.QK[6].T).item(),
        "V": composition_scores(model.OV[16, 0], attn.OV[6]).item(),
    }
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert ours["K"] > 3 * model.cfg.d_model**-0.5  # 16.0 shifts 18.6's keys: well above random matrices


def test_copying_score_of_the_full_circuit_equals_the_cycled_product(model):
    """The demo scores every head from W_V, W_O (W_U W_E): the same eigenvalues as the full circuit."""
    from transformer_lens import FactoredMatrix

    full = ref00.copying_score(ref00.full_ov_circuit(model, 18, 6))
    cycled = ref00.copying_score(FactoredMatrix(model.W_V[18, 6], model.W_O[18, 6] @ (model.W_U @ model.W_E)))
    assert full == pytest.approx(cycled, abs=1e-3)
