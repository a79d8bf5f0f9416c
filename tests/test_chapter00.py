"""Chapter 00's checks beyond the common rules of tests/test_exercises.py."""

from __future__ import annotations

import pytest

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
