"""Grading: one engine for the in-notebook checks, the grading CLI, pytest and nbgrader.

- `engine`  exercises as data (`Exercise`, `Case`), `match`, `call_learner`, `judge`;
- `checks`  the in-notebook ``check.<function>(fn)`` object;
- `notebook` reading a submission: which chapter, which cells a grade runs;
- `kernel`  what runs inside the learner's grading kernel (and nothing else does);
- `wire`    how inputs and outputs cross between the grader and that kernel;
- `driver`  the grading process: start a kernel, run the learner's cells, call, judge.

The command line is `utils.grade` (``python -m utils.grade``).
"""

from utils.grading.checks import CheckFailed, Checks
from utils.grading.engine import Case, Exercise, Outcome, Result, Unportable, call_learner, judge, match, run_exercise

__all__ = ["Case", "CheckFailed", "Checks", "Exercise", "Outcome", "Result", "Unportable"]
__all__ += ["call_learner", "judge", "match", "run_exercise"]
