"""The course's one grading engine: exercises as data, comparing values, calling learner code.

An exercise's check is data: the function the learner writes, the inputs (cases), the reference
implementation, a tolerance. Every way of grading uses this module:

- the in-notebook check (`utils.grading.checks`): runs every case here, in the learner's kernel;
- the grade of a notebook (`utils.grading.driver`): the learner's function runs in its own kernel
  (`utils.grading.kernel` calls it there with `call_learner`), the reference and `judge` run in
  the grading process, where the learner's code cannot reach them.

Both paths call the same `call_learner` and the same `judge`, so a notebook check and a grade agree.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from utils.nested import DESCEND, map_nested

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

# ---------------------------------------------------------------------------------------------
# Exercises as data


@dataclass
class Case:
    """One set of inputs for an exercise; ``label`` tells the learner which case failed."""

    args: tuple
    label: str
    kwargs: dict = field(default_factory=dict)
    hidden: bool = False  # only run when grading (or `hidden=True` in the notebook)


@dataclass
class Exercise:
    """A graded exercise: the learner writes ``function``; we compare it with ``reference``.

    ``cases`` builds the inputs (deterministically). ``compare(expected, got)`` returns ``None`` when
    ``got`` is right, else a message; the default compares values within ``atol``/``rtol``. ``hints``
    is a ladder, from the idea to the concrete step, never the solution; ``difficulty`` and
    ``importance`` (1–5) and ``minutes`` give the learner the pace (`make release` prints them above
    the exercise). ``probe`` ("module:function") calls ``probe(fn, *args)`` instead of ``fn(*args)``,
    e.g. to judge a gradient; ``wrap`` turns a function into what the check compares (applied to the
    reference and to known mistakes alike), e.g. to keep the inputs beside the output.
    """

    function: str
    points: float
    cases: Callable[[], Sequence[Case]]
    reference: Callable[..., Any]
    atol: float = 1e-4
    rtol: float = 1e-4
    compare: Callable[[Any, Any], str | None] | None = None
    hints: Sequence[str] = ()
    difficulty: int = 0
    importance: int = 0
    minutes: int = 0
    probe: str | None = None
    wrap: Callable[[Callable], Callable] | None = None

    def judge_value(self, expected: Any, got: Any) -> str | None:
        if self.compare is not None:
            return self.compare(expected, got)
        return match(expected, got, atol=self.atol, rtol=self.rtol)

    def producer(self, fn: Callable) -> Callable:
        """What the check calls for ``fn`` (the reference, a known mistake, or the learner's function)."""
        wrapped = with_probe(fn, self.probe)
        return self.wrap(wrapped) if self.wrap is not None else wrapped


@dataclass
class Result:
    """One exercise's grade, in the grading contract's shape."""

    id: str
    points: float
    max_points: float
    passed: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "points": float(self.points),
            "max_points": float(self.max_points),
            "passed": self.passed,
            "message": self.message,
        }


# ---------------------------------------------------------------------------------------------
# Comparing a learner's value with the reference's


def describe(value: Any) -> str:
    """A short, learner-facing description of a value's type (and shape, for tensors)."""
    if isinstance(value, Unportable):
        return value.description
    if isinstance(value, torch.Tensor):
        device = "" if value.device.type == "cpu" else f" on the {value.device.type} device"
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}{device}"
    if type(value).__module__ == "numpy" and hasattr(value, "shape"):
        return f"a numpy array of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def match(expected: Any, got: Any, atol: float = 1e-4, rtol: float = 1e-4, where: str = "") -> str | None:
    """``None`` if ``got`` equals ``expected`` (within tolerance), else a message saying how not."""
    at = f" at {where}" if where else ""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor{at}, got {describe(got)}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"expected shape {tuple(expected.shape)}{at}, got shape {tuple(got.shape)}"
        if got.dtype != expected.dtype:
            return f"expected dtype {expected.dtype}{at}, got {got.dtype}"
        if got.device.type == "meta":
            return f"expected a tensor with values{at}, got one on the meta device (a shape but no values)"
        got, expected = got.detach().cpu(), expected.detach().cpu()
        if expected.dtype == torch.bool or not (expected.is_floating_point() or expected.is_complex()):
            wrong = got != expected
        else:
            bad = ~torch.isfinite(got) & torch.isfinite(expected)
            if bad.any():
                return f"{int(bad.sum())} entries{at} are NaN or infinite (first at index {_index(bad)})"
            wrong = ~torch.isclose(got, expected, atol=atol, rtol=rtol, equal_nan=True)
        if wrong.any():
            idx = tuple(int(i) for i in wrong.nonzero()[0])
            msg = (
                f"{int(wrong.sum())} of {wrong.numel()} entries differ{at}; first at index {list(idx)}: "
                f"expected {_fmt(expected[idx].item())}, got {_fmt(got[idx].item())}"
            )
            if expected.is_floating_point():
                msg += f" (largest difference {_fmt((got - expected).abs().nan_to_num(math.inf).max().item())})"
            return msg
        return None
    if isinstance(expected, (bool, str)):
        if type(got) is not type(expected) or got != expected:
            shown = repr(got) if len(repr(got)) < 200 else describe(got)
            return f"expected {expected!r}{at}, got {shown}"
        return None
    if isinstance(expected, (int, float)):
        if isinstance(got, torch.Tensor) and got.numel() == 1 and got.device.type != "meta":
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"expected a number{at}, got {describe(got)}"
        if isinstance(expected, int) and isinstance(got, int):
            return None if got == expected else f"expected {expected}{at}, got {got}"
        if not math.isfinite(got) and math.isfinite(expected):
            return f"expected {_fmt(expected)}{at}, got {got}"
        if not math.isclose(got, expected, abs_tol=atol, rel_tol=rtol):
            return f"expected {_fmt(expected)}{at}, got {_fmt(got)}"
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"expected a {type(expected).__name__} of {len(expected)} items{at}, got {describe(got)}"
        if len(got) != len(expected):
            return f"expected {len(expected)} items{at}, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            if (msg := match(e, g, atol, rtol, where=f"{where}[{i}]")) is not None:
                return msg
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"expected a dict{at}, got {describe(got)}"
        if set(got) != set(expected):
            return f"expected keys {sorted(map(str, expected))}{at}, got {sorted(map(str, got))}"
        for key in expected:
            if (msg := match(expected[key], got[key], atol, rtol, where=f"{where}[{key!r}]")) is not None:
                return msg
        return None
    if expected is None:
        return None if got is None else f"expected None{at}, got {describe(got)}"
    raise TypeError(f"match() can't compare reference values of type {type(expected).__name__}")


def _index(mask: torch.Tensor) -> list[int]:
    return [int(i) for i in mask.nonzero()[0]]


# ---------------------------------------------------------------------------------------------
# Calling the learner's function safely


class ReferenceUnavailable(Exception):
    """Raised inside a grading kernel by every function of the reference module it may not use."""


class GradingTimeout(BaseException):
    """Raised inside the learner's code when it runs past the time limit (BaseException, so a
    bare ``except Exception`` in the learner's code does not swallow it)."""


@dataclass
class Unportable:
    """Stands for a value that can't be sent back from the grading kernel (e.g. a generator)."""

    description: str


@dataclass
class Outcome:
    """What one call of the learner's function gave: a value, or an error message."""

    value: Any = None
    error: str | None = None


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise `GradingTimeout` in this (main) thread after ``seconds``; no limit if None."""
    if not seconds:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise GradingTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def models_among(values: Sequence[Any]) -> list[HookedTransformer]:
    """The TransformerLens models among ``values``. Importing TransformerLens costs a grading process and its
    kernel ~3 s each, and chapters 01 and 04d grade without it: no model can exist before it is imported."""
    lens = sys.modules.get("transformer_lens")
    return [] if lens is None else [v for v in values if isinstance(v, lens.HookedTransformer)]


def weights_fingerprint(model: HookedTransformer) -> list[float]:
    """A cheap summary of every parameter (~20 ms), to notice a function that edits the model."""
    with torch.no_grad():
        return [p._version for p in model.parameters()] + torch.stack([p.detach().sum() for p in model.parameters()]).tolist()


def learner_frame(tb: Any) -> str:
    """' (line N of your `fn`)' for the innermost traceback frame outside the course's code."""
    course_or_library = ("/utils/", "site-packages")
    frames = [f for f in traceback.extract_tb(tb) if not any(part in f.filename for part in course_or_library)]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (line {frame.lineno}, in `{frame.name}`)"


def error_message(error: BaseException) -> str:
    """A one-line, plain description of an exception raised by the learner's code."""
    if isinstance(error, NotImplementedError):
        return "not implemented yet (the function still raises NotImplementedError)"
    if isinstance(error, ReferenceUnavailable):
        return (
            f"uses the course's reference implementation {error} (directly or through a course helper built on it), "
            "which is withheld while grading: write the function yourself"
        )
    if isinstance(error, GradingTimeout):
        return "took too long and was stopped (an endless loop?)"
    if isinstance(error, SystemExit):
        return "called sys.exit()/exit(); a function should return a value instead"
    if isinstance(error, KeyboardInterrupt):
        return "was interrupted"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text if len(text) <= 300 else text[:300] + "..."
    return f"raised {type(error).__name__}{': ' + text if text else ''}{learner_frame(error.__traceback__)}"


def clone_inputs(value: Any) -> Any:
    """A copy of a case's inputs: tensors cloned (a function that edits its inputs harms no other case)."""
    return map_nested(lambda v: v.clone() if isinstance(v, torch.Tensor) else DESCEND, value)


def with_probe(fn: Callable[..., Any], probe: str | None) -> Callable[..., Any]:
    """``fn`` itself, or ``probe(fn, *args)`` when the exercise looks at more than the returned value."""
    if probe is None:
        return fn
    import functools
    import importlib

    module, name = probe.split(":")
    return functools.partial(getattr(importlib.import_module(module), name), fn)


def call_learner(fn: Callable[..., Any], case: Case, seconds: float | None = None, probe: str | None = None) -> Outcome:
    """Call ``fn`` on a copy of the case's inputs; never raises (the error becomes the outcome).

    Models passed in are checked afterwards: hooks the function left attached are removed, and
    weights it changed in place are restored (and reported, since that is a bug).
    """
    args, kwargs = clone_inputs(case.args), clone_inputs(case.kwargs)
    models = models_among([*args, *kwargs.values()])
    before = [weights_fingerprint(m) for m in models]
    try:
        with time_limit(seconds):
            value = with_probe(fn, probe)(*args, **kwargs)
        outcome = Outcome(value=value)
    except (Exception, GradingTimeout, SystemExit, KeyboardInterrupt) as error:  # noqa: B036
        outcome = Outcome(error=error_message(error))
    for model, fingerprint in zip(models, before):
        model.reset_hooks(including_permanent=True)
        if weights_fingerprint(model) != fingerprint:
            restore = getattr(model, "restore_weights", None)  # course models carry it (utils.models)
            if restore is not None:
                restore()
            outcome = Outcome(error="changed the model's weights in place; use a hook instead (weights restored)")
    return outcome


# ---------------------------------------------------------------------------------------------
# Judging outcomes


def judge(
    exercise: Exercise, cases: Sequence[Case], expected: Sequence[Any], outcomes: Iterable[Outcome], diagnose: bool = True
) -> Result:
    """All-or-nothing per exercise: every case must pass. The message names the first failure (a hidden
    case by that word only: its label describes its inputs, which grading never shows), says which
    known mistake gives that output when one does (`diagnosis`), and offers the first hint."""
    total = len(cases)
    for number, (case, want, outcome) in enumerate(zip(cases, expected, outcomes), start=1):
        problem = outcome.error if outcome.error is not None else exercise.judge_value(want, outcome.value)
        if problem is not None:
            label = "a hidden case, of the same kind as the ones your notebook checks" if case.hidden else case.label
            parts = [f"case {number} of {total} ({label}): {problem}"]
            if outcome.error is None:
                found = diagnosis(exercise, case, outcome.value, want, problem) if diagnose else None
                parts += [f"This is what you get when {found}"] if found else []
                parts += [f"Hint 1 of {len(exercise.hints)}: {exercise.hints[0]}"] if exercise.hints else []
            return Result(exercise.function, 0.0, exercise.points, False, ". ".join(p.rstrip(". ") for p in parts))
    hidden = sum(case.hidden for case in cases)
    return Result(exercise.function, exercise.points, exercise.points, True, f"all {total} cases pass" + (
        f" ({hidden} of them hidden)" if hidden else ""))


# ---------------------------------------------------------------------------------------------
# Known mistakes: wrong implementations that must fail, and whose output names the mistake


@dataclass(frozen=True)
class Mistake:
    name: str  # "attention_pattern__no_scaling"
    function: Callable[..., Any]
    diagnosis: str  # completes "This is what you get when …"


def mistakes_of(exercise: Exercise) -> list[Mistake]:
    """The exercise's known mistakes: functions ``<exercise>__<mistake>`` in the mistakes module of
    its chapter (``utils/mistakes/chapterNN.py``), their docstrings saying what went wrong."""
    import importlib

    module_name = getattr(exercise.reference, "__module__", "").replace("utils.references.", "utils.mistakes.", 1)
    try:
        module = importlib.import_module(module_name) if module_name.startswith("utils.mistakes.") else None
    except ImportError:
        module = None
    prefix = f"{exercise.function}__"
    return [
        Mistake(name, fn, " ".join((fn.__doc__ or name.removeprefix(prefix).replace("_", " ")).split()))
        for name, fn in (vars(module) if module is not None else {}).items()
        if name.startswith(prefix) and callable(fn) and getattr(fn, "__module__", None) == module_name
    ]


_MISTAKE_OUTPUTS: dict[tuple[str, str, str, str], Outcome] = {}


def _signature(problem: str | None) -> str | None:
    """A check's message with its numbers blanked: how an output fails, not by how much."""
    import re

    return None if problem is None else re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", problem)


def diagnosis(exercise: Exercise, case: Case, value: Any, expected: Any = None, problem: str | None = None) -> str | None:
    """The diagnosis of the first known mistake whose output on ``case`` the check can't tell from
    ``value``; for a statistical check (a custom ``compare``: random outputs never match), the first whose
    output fails the check the same way (``problem``, the check's message on ``value``, numbers aside).
    Each mistake runs once per case and process, and only when a learner's output is wrong."""
    for mistake in mistakes_of(exercise):
        key = (mistake.function.__module__, exercise.function, case.label, mistake.name)
        if key not in _MISTAKE_OUTPUTS:
            producer = exercise.producer(mistake.function)
            with torch.no_grad():
                _MISTAKE_OUTPUTS[key] = call_learner(producer, case)
        outcome = _MISTAKE_OUTPUTS[key]
        if outcome.error is not None:
            continue
        if exercise.judge_value(outcome.value, value) is None:
            return mistake.diagnosis
        if exercise.compare is not None and problem is not None and exercise.wrap is None:
            if _signature(exercise.judge_value(expected, outcome.value)) == _signature(problem):
                return mistake.diagnosis
    return None


def failed(exercise: Exercise, message: str) -> Result:
    return Result(exercise.function, 0.0, exercise.points, False, message)


def reference_outputs(exercise: Exercise, cases: Sequence[Case]) -> list[Any]:
    reference = exercise.producer(exercise.reference)
    with torch.no_grad():
        return [reference(*clone_inputs(c.args), **clone_inputs(c.kwargs)) for c in cases]


def run_exercise(exercise: Exercise, fn: Any, hidden: bool = True) -> Result:
    """Grade ``fn`` in this process (the notebook's check, and pytest's)."""
    return run_cases(exercise, fn, [c for c in exercise.cases() if hidden or not c.hidden])


def run_cases(exercise: Exercise, fn: Any, cases: Sequence[Case]) -> Result:
    if not callable(fn):
        return failed(exercise, f"`{exercise.function}` should be a function, got {describe(fn)}")
    expected = reference_outputs(exercise, cases)
    outcomes = (call_learner(fn, c, probe=exercise.probe) for c in cases)  # lazily: `judge` stops at the first failure
    return judge(exercise, cases, expected, outcomes)
