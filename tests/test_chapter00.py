"""Chapter 00's checks: the references pass, stubs and every wrong implementation fail."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import wrong_implementations
from utils import chapter00
from utils.grading import CheckFailed, run_exercise

EXERCISES = {exercise.function: exercise for exercise in chapter00.EXERCISES}
WRONG = wrong_implementations("00")


@pytest.mark.parametrize("function", EXERCISES)
def test_reference_passes(function):
    result = run_exercise(EXERCISES[function], getattr(chapter00, function))
    assert result.passed, result.message
    assert result.points == EXERCISES[function].points


@pytest.mark.parametrize("function", EXERCISES)
def test_stub_fails_with_a_plain_message(function):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    result = run_exercise(EXERCISES[function], stub)
    assert not result.passed and result.points == 0
    assert "not implemented yet" in result.message


@pytest.mark.parametrize(("function", "mistake", "implementation"), WRONG, ids=[f"{f}__{m}" for f, m, _ in WRONG])
def test_wrong_implementation_is_caught(function, mistake, implementation):
    result = run_exercise(EXERCISES[function], implementation)
    assert not result.passed, f"{function}__{mistake} passed the check"
    assert result.points == 0
    assert result.message.startswith("case ")


def test_every_exercise_has_two_wrong_implementations():
    counts = Counter(function for function, _, _ in WRONG)
    assert set(counts) <= set(EXERCISES), f"fixtures for unknown exercises: {set(counts) - set(EXERCISES)}"
    assert {f: counts[f] for f in EXERCISES if counts[f] < 2} == {}


def test_in_place_weight_edit_is_reported_and_undone(model):
    before = model.blocks[18].attn.W_O.sum().item()
    wrong = dict((f"{f}__{m}", impl) for f, m, impl in WRONG)["ablated_loss__edits_weights_in_place"]
    result = run_exercise(EXERCISES["ablated_loss"], wrong)
    assert "changed the model's weights" in result.message
    assert model.blocks[18].attn.W_O.sum().item() == before


def test_check_prints_a_tick_or_raises_one_line(capsys):
    chapter00.check.previous_token_scores(chapter00.previous_token_scores)
    assert "✓ previous_token_scores" in capsys.readouterr().out
    with pytest.raises(CheckFailed) as failure:
        chapter00.check.previous_token_scores(lambda patterns: patterns.sum(-1))
    assert failure.value._render_traceback_()[0].count("\n") == 0
    assert "expected shape" in str(failure.value)
