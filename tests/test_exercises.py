"""Every chapter's checks, by the same rules: the reference passes; a stub and every wrong
implementation in tests/wrong/chapterNN.py fail; every exercise has at least two of those; the
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
def test_wrong_implementation_is_caught(chapter, function, mistake, implementation):
    result = run_exercise(exercise_of(chapter, function), implementation)
    assert not result.passed, f"{function}__{mistake} passed the check"
    assert result.points == 0
    assert result.message.startswith("case ")


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
