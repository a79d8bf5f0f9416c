"""Every chapter's checks, by the same rules: the reference passes; a stub and every wrong
implementation in utils/mistakes/chapterNN.py fail; every exercise has at least two of those; the
reference code in the solution notebook passes its own checks."""

from __future__ import annotations

import importlib
from collections import Counter

import nbformat
import pytest
import torch

from tests.conftest import SOLUTIONS, wrong_implementations
from utils.course import EXERCISE_MODULES, REFERENCE_MODULES, chapter_id, notebooks
from utils.grading.engine import run_exercise

EXERCISES = [
    (chapter, exercise)
    for chapter, module in sorted(EXERCISE_MODULES.items())
    for exercise in importlib.import_module(module).EXERCISES
]
WRONG = [(chapter, *fixture) for chapter in sorted(EXERCISE_MODULES) for fixture in wrong_implementations(chapter)]


def exercise_of(chapter: str, function: str):
    return next(e for c, e in EXERCISES if c == chapter and e.function == function)


@pytest.mark.parametrize(("chapter", "exercise"), EXERCISES, ids=[f"{c}-{e.function}" for c, e in EXERCISES])
def test_reference_passes(chapter, exercise):
    reference = getattr(importlib.import_module(REFERENCE_MODULES[chapter]), exercise.function)
    result = run_exercise(exercise, reference)
    assert result.passed, result.message
    assert result.points == exercise.points


@pytest.mark.parametrize(("chapter", "exercise"), EXERCISES, ids=[f"{c}-{e.function}" for c, e in EXERCISES])
def test_stub_fails_with_a_plain_message(chapter, exercise):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    result = run_exercise(exercise, stub)
    assert not result.passed and result.points == 0
    assert "not implemented yet" in result.message


@pytest.mark.parametrize(
    ("chapter", "function", "mistake", "implementation"), WRONG, ids=[f"{c}-{f}__{m}" for c, f, m, _ in WRONG]
)
def test_wrong_implementation_is_caught_and_named(chapter, function, mistake, implementation):
    """Every known mistake loses its points; when it returns a (wrong) value, the message names a mistake
    that gives that value — its own, unless an earlier one gives the same value on that case."""
    result = run_exercise(exercise_of(chapter, function), implementation)
    assert not result.passed, f"{function}__{mistake} passed the check"
    assert result.points == 0
    assert result.message.startswith("case ")
    diagnosis = " ".join(implementation.__doc__.split()).rstrip(".")
    if "Hint 1 of" in result.message:  # a wrong value (an exception or a weight edit is reported as such)
        assert "This is what you get when " in result.message, result.message
        named = result.message.split("This is what you get when ", 1)[1]
        if not named.startswith(diagnosis):
            known = {" ".join(m.__doc__.split()).rstrip(".") for c, f, _, m in WRONG if (c, f) == (chapter, function)}
            assert any(named.startswith(d) for d in known), named


@pytest.mark.parametrize("chapter", sorted(EXERCISE_MODULES))
def test_every_mistake_says_what_went_wrong_and_every_exercise_has_its_pace_and_hints(chapter):
    """The diagnosis completes "This is what you get when …"; a ladder of two or three hints; pace 1–5."""
    undocumented = [f"{f}__{m}" for c, f, m, fn in WRONG if c == chapter and not (fn.__doc__ or "").strip()]
    assert undocumented == []
    for c, exercise in EXERCISES:
        if c == chapter:
            assert 2 <= len(exercise.hints) <= 3, f"{exercise.function}: {len(exercise.hints)} hints"
            assert 1 <= exercise.difficulty <= 5 and 1 <= exercise.importance <= 5 and exercise.minutes > 0, exercise.function


@pytest.mark.parametrize("chapter", sorted(EXERCISE_MODULES))
def test_every_exercise_has_two_wrong_implementations(chapter):
    functions = {e.function for c, e in EXERCISES if c == chapter}
    counts = Counter(function for c, function, _, _ in WRONG if c == chapter)
    assert set(counts) <= functions, f"fixtures for unknown exercises: {set(counts) - functions}"
    assert {f: counts[f] for f in functions if counts[f] < 2} == {}


@pytest.mark.parametrize("source", notebooks(SOLUTIONS), ids=lambda p: p.name)
def test_solution_notebook_functions_pass(source):
    """The notebook's reference code (what the release turns into stubs) passes the checks, run after the
    setup cells as the grader runs it."""
    cells = nbformat.read(source, as_version=4).cells
    setup = [c for c in cells if "setup" in c.metadata.get("tags", [])]
    solutions = [c for c in cells if c.metadata.get("nbgrader", {}).get("solution")]
    namespace: dict = {}
    try:
        for cell in setup + solutions:
            exec(cell.source, namespace)
        for exercise in importlib.import_module(EXERCISE_MODULES[chapter_id(source.name)]).EXERCISES:
            result = run_exercise(exercise, namespace[exercise.function])
            assert result.passed, f"{exercise.function}: {result.message}"
    finally:
        torch.set_grad_enabled(True)  # a setup cell may turn gradients off for its notebook
