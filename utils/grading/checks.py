"""The in-notebook check: ``check.attention_pattern(attention_pattern)`` in a learner's notebook.

It runs every visible case in the learner's own kernel (the reference too: self-study needs no
grader), prints one line, and raises `CheckFailed` on failure so that nbgrader marks the cell wrong.
A failure names the case, the known mistake that gives the same output (if one does) and the first
hint; ``check.hint("attention_pattern")`` shows the next hint each time it is called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from utils.errors import CourseError
from utils.grading.engine import Exercise, run_cases


class CheckFailed(CourseError, AssertionError):
    """A check cell's failure: one line for the learner, a failed test for nbgrader."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{self}\x1b[0m"]


class Checks:
    """``check.<function>(fn)`` for every exercise of a chapter, and ``check.hint(function)``.

    >>> check = Checks(EXERCISES)
    >>> check.attention_pattern(attention_pattern)   # prints ✓ or raises CheckFailed
    >>> check.hint("attention_pattern")              # the next hint of the ladder
    """

    def __init__(self, exercises: Sequence[Exercise]):
        self.exercises = {ex.function: ex for ex in exercises}
        self.hints_shown: dict[str, int] = {}

    def __dir__(self) -> list[str]:
        return [*self.exercises, "hint"]

    def hint(self, function: str, number: int | None = None) -> None:
        """Print hint ``number`` for ``function`` (by default the next one: the first failure showed hint 1)."""
        exercise = self.exercises.get(function)
        if exercise is None:
            raise CheckFailed(f"no exercise named {function!r}; exercises: {', '.join(self.exercises)}")
        hints = list(exercise.hints)
        if not hints:
            print(f"`{function}` has no hints")
            return
        shown = self.hints_shown.get(function, 1)
        number = number if number is not None else min(shown + 1, len(hints))
        if not 1 <= number <= len(hints):
            raise CheckFailed(f"`{function}` has hints 1 to {len(hints)}")
        self.hints_shown[function] = max(shown, number)
        last = " (the last one: from here, compare your function with the failing case step by step)"
        print(f"Hint {number} of {len(hints)} for `{function}`: {hints[number - 1]}" + (last if number == len(hints) else ""))

    def __getattr__(self, name: str) -> Callable[..., None]:
        exercises = self.__dict__.get("exercises", {})
        if name not in exercises:
            raise AttributeError(f"no check named {name!r}; checks: {', '.join(exercises)}")
        exercise = exercises[name]

        def run(fn: Any, hidden: bool = False) -> None:
            cases = list(exercise.cases())
            result = run_cases(exercise, fn, [case for case in cases if hidden or not case.hidden])
            if not result.passed:
                more = f'. More help: check.hint("{name}")' if len(exercise.hints) > 1 and "Hint 1 of" in result.message else ""
                raise CheckFailed(f"✗ {name}: {result.message}{more}")
            n_hidden = 0 if hidden else sum(case.hidden for case in cases)
            note = f" — grading adds {n_hidden} hidden case{'s' * (n_hidden > 1)} of the same kind" if n_hidden else ""
            print(f"✓ {name}: {result.message}{note}")

        run.__doc__ = f"Check your `{name}` against the reference on fixed inputs."
        return run
