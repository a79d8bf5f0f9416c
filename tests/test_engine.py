"""The grading engine on its own: comparisons, messages, time limits, learner errors."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from utils.errors import CourseError
from utils.grading.checks import CheckFailed, Checks
from utils.grading.engine import Case, Exercise, Unportable, call_learner, error_message, match, run_exercise


def test_match_accepts_equal_values():
    assert match(torch.ones(2, 3), torch.ones(2, 3) + 1e-6) is None
    assert match([1, "a", 2.0], [1, "a", 2.0 + 1e-7]) is None
    assert match({"x": torch.zeros(2)}, {"x": torch.zeros(2)}) is None
    assert match(1.5, torch.tensor(1.5)) is None  # a 0-d tensor is a number


@pytest.mark.parametrize(
    ("got", "words"),
    [
        (torch.ones(3, 2), "expected shape (2, 3), got shape (3, 2)"),
        (torch.ones(2, 3, dtype=torch.float64), "expected dtype torch.float32, got torch.float64"),
        (torch.full((2, 3), math.nan), "are NaN or infinite"),
        (torch.full((2, 3), math.inf), "are NaN or infinite"),
        (np.ones((2, 3), dtype=np.float32), "got a numpy array of shape (2, 3)"),
        ([[1.0] * 3] * 2, "expected a torch.Tensor, got a list"),
        (None, "expected a torch.Tensor, got a NoneType"),
        (Unportable("a generator"), "got a generator"),
        (torch.ones(2, 3) * 2, "6 of 6 entries differ; first at index [0, 0]: expected 1, got 2"),
        (torch.ones(2, 3, device="meta"), "got one on the meta device"),
    ],
)
def test_match_says_what_is_wrong(got, words):
    assert words in match(torch.ones(2, 3), got)


def test_match_on_numbers_lists_and_dicts():
    assert "on the meta device" in match(1.0, torch.tensor(1.0, device="meta"))
    assert match(2.0, 2.5) == "expected 2, got 2.5"
    assert match(2.0, "2") == "expected a number, got a str"
    assert match(2.0, math.nan) == "expected 2, got nan"
    assert match(3, True) == "expected a number, got a bool"
    assert match([1, 2], [1]) == "expected 2 items, got 1"
    assert match([torch.ones(1), torch.ones(2)], [torch.ones(1), torch.ones(3)]).endswith("got shape (3,)")
    assert "at [1]" in match([torch.ones(1), torch.ones(2)], [torch.ones(1), torch.ones(3)])
    assert match({"a": 1}, {"b": 1}) == "expected keys ['a'], got ['b']"
    assert match(["Mary"], ["John"]) == "expected 'Mary' at [0], got 'John'"


def test_error_messages_are_one_plain_line():
    def broken():
        return 1 / 0

    try:
        broken()
    except ZeroDivisionError as error:
        message = error_message(error)
    assert message.startswith("raised ZeroDivisionError: division by zero (line")
    assert "in `broken`" in message
    assert error_message(NotImplementedError()).startswith("not implemented yet")
    assert "sys.exit" in error_message(SystemExit(1))
    assert "\n" not in error_message(ValueError("many\nlines\nof text"))


def test_call_learner_stops_an_endless_loop():
    def forever(x):
        while True:
            x = x + 1

    start = time.monotonic()
    outcome = call_learner(forever, Case((torch.zeros(1),), "a"), seconds=0.5)
    assert time.monotonic() - start < 5
    assert outcome.error == "took too long and was stopped (an endless loop?)"


def test_call_learner_survives_sys_exit_and_bare_except():
    def exits(x):
        raise SystemExit(3)

    def swallows(x):
        try:
            raise ValueError("inner")
        except Exception:
            return None

    assert "sys.exit" in call_learner(exits, Case((1,), "a")).error
    assert call_learner(swallows, Case((1,), "a")).value is None


def test_learner_cannot_change_the_inputs_the_reference_sees():
    exercise = Exercise("double", 1, lambda: [Case((torch.ones(3),), "ones")], reference=lambda x: x * 2)

    def doubles_in_place(x):
        x.mul_(2)
        return x

    assert run_exercise(exercise, doubles_in_place).passed


def _exercise() -> Exercise:
    return Exercise(
        "add_one",
        2,
        lambda: [Case((torch.arange(3.0),), "0..2"), Case((torch.ones(2, 2),), "ones", hidden=True)],
        reference=lambda x: x + 1,
        hints=("add one", "one more than each entry"),
    )


def test_checks_run_visible_cases_in_the_notebook_and_all_when_grading(capsys):
    check = Checks([_exercise()])
    sneaky = lambda x: torch.tensor([1.0, 2.0, 3.0])  # noqa: E731 - right only on the visible case
    check.add_one(sneaky)
    assert "✓ add_one: all 1 cases pass" in capsys.readouterr().out
    with pytest.raises(CheckFailed):
        check.add_one(sneaky, hidden=True)
    assert not run_exercise(_exercise(), sneaky).passed


def test_check_failure_is_a_one_line_course_error():
    check = Checks([_exercise()])
    with pytest.raises(CheckFailed) as failure:
        check.add_one(lambda x: x)
    assert isinstance(failure.value, CourseError) and isinstance(failure.value, AssertionError)
    (line,) = failure.value._render_traceback_()
    assert "✗ add_one: case 1 of 1 (0..2)" in line and "Hint 1 of 2: add one. More help: check.hint(\"add_one\")" in line
    with pytest.raises(AttributeError, match="no check named 'nope'"):
        check.nope  # noqa: B018
    assert "not callable" not in run_exercise(_exercise(), 3).message
    assert run_exercise(_exercise(), 3).message == "`add_one` should be a function, got a int"


def test_a_failing_hidden_case_is_named_without_its_inputs():
    sneaky = lambda x: torch.tensor([1.0, 2.0, 3.0]) if x.shape == (3,) else x  # noqa: E731 - right only on the visible case
    result = run_exercise(_exercise(), sneaky)
    assert result.message.startswith("case 2 of 2 (a hidden case, of the same kind as the ones your notebook checks):")
    assert "(ones)" not in result.message  # the hidden case's label ("ones") describes its inputs


def test_a_withheld_reference_module_imports_but_cannot_be_used():
    import sys

    from utils.grading.kernel import Withheld, WithholdReferences

    guard = WithholdReferences(["utils.references.chapter04d"])
    saved = sys.modules.pop("utils.references.chapter04d", None)
    try:
        guard.enforce()
        from utils.references import chapter04d

        assert isinstance(chapter04d, Withheld)
        result = run_exercise(_exercise(), lambda x: chapter04d.keep_half(x, 0))
        assert "uses the course's reference implementation `utils.references.chapter04d.keep_half`" in result.message
        assert "withheld while grading" in result.message
    finally:
        sys.meta_path.remove(guard)
        sys.modules.pop("utils.references.chapter04d", None)
        if saved is not None:
            sys.modules["utils.references.chapter04d"] = saved
            import utils.references

            utils.references.chapter04d = saved


def test_a_check_stops_calling_the_learner_at_the_first_failing_case():
    calls = []

    def wrong(x):
        calls.append(x)
        return x + 1

    exercise = Exercise("double", 1, lambda: [Case((torch.tensor(float(i)),), f"x = {i}") for i in range(1, 4)], lambda x: 2 * x)
    result = run_exercise(exercise, wrong)
    assert not result.passed and result.message.startswith("case 2 of 3")  # 1 + 1 == 2 * 1: case 1 passes
    assert len(calls) == 2  # case 3 is never run: only the first failure is reported


def test_grading_chapters_without_a_language_model_never_imports_transformer_lens():
    """Chapters 01 and 04d grade without TransformerLens (importing it costs the grader and its kernel ~3 s each)."""
    import subprocess
    import sys

    from utils.paths import ROOT

    code = (
        "import sys, utils.grade, utils.grading.kernel\n"
        "from utils.grading.notebook import exercises_of\n"
        "exercises_of('01'); exercises_of('04d')\n"
        "utils.grading.kernel.bootstrap(['utils.references.chapter04d'], lens=False)\n"
        "print('transformer_lens' in sys.modules)\n"
        "utils.grading.kernel.bootstrap(['utils.references.chapter00'], lens=True)\n"
        "print('transformer_lens' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.split() == ["False", "True"], done.stderr[-2000:]
