"""The in-notebook check: ``check.attention_pattern(attention_pattern)`` in a learner's notebook.

It runs every case in the learner's own kernel (the reference too: self-study needs no grader),
prints one line, and raises `CheckFailed` on failure so that nbgrader marks the cell wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from utils.errors import CourseError
from utils.grading.engine import Exercise, run_exercise


class CheckFailed(CourseError, AssertionError):
    """A check cell's failure: one line for the learner, a failed test for nbgrader."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{self}\x1b[0m"]


class Checks:
    """``check.<function>(fn)`` for every exercise of a chapter.

    >>> check = Checks(EXERCISES)
    >>> check.attention_pattern(attention_pattern)   # prints ✓ or raises CheckFailed
    """

    def __init__(self, exercises: Sequence[Exercise]):
        self.exercises = {ex.function: ex for ex in exercises}

    def __dir__(self) -> list[str]:
        return list(self.exercises)

    def __getattr__(self, name: str) -> Callable[..., None]:
        exercises = self.__dict__.get("exercises", {})
        if name not in exercises:
            raise AttributeError(f"no check named {name!r}; checks: {', '.join(exercises)}")
        exercise = exercises[name]

        def run(fn: Any, hidden: bool = False) -> None:
            result = run_exercise(exercise, fn, hidden=hidden)
            if not result.passed:
                raise CheckFailed(f"✗ {name}: {result.message}")
            print(f"✓ {name}: {result.message}")

        run.__doc__ = f"Check your `{name}` against the reference on fixed inputs."
        return run
