"""What runs inside the learner's grading kernel — and only there.

The driver (`utils.grading.driver`) starts a fresh kernel, runs `bootstrap` first, then the
learner's cells one by one with `run_cell`, then `call` once per exercise. Everything the learner's
code returns leaves this process as a file (`utils.grading.wire`); the references and the
comparison stay in the grading process. Between calls `reset_global_state` undoes what a learner's
cell may have changed globally (monkey-patched torch or course code, default dtype, seeds).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from utils.grading.engine import Case, GradingTimeout, call_learner, describe, error_message, time_limit
from utils.grading.wire import portable, resolve_models

MAX_PRINTED = 2000  # characters of the learner's printed output kept (the rest is swallowed)
_MISSING = object()
_SNAPSHOT: list[tuple[Any, dict[str, Any]]] = []
_MODELS: dict[str, Any] = {}


class _Sink(io.TextIOBase):
    """Swallows what the learner's code prints (keeps only the start)."""

    def __init__(self) -> None:
        self.kept = ""

    def write(self, text: str) -> int:
        if len(self.kept) < MAX_PRINTED:
            self.kept += text[: MAX_PRINTED - len(self.kept)]
        return len(text)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    sink = _Sink()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _guarded_objects() -> list[Any]:
    import math
    import random

    import einops
    import numpy
    import transformer_lens

    import utils

    modules = [torch, torch.nn.functional, torch.nn, einops, numpy, math, random, transformer_lens, utils]
    modules += [m for name, m in sys.modules.items() if name.startswith("utils.") and m is not None]
    classes = [torch.Tensor, torch.nn.Module, transformer_lens.HookedTransformer, transformer_lens.ActivationCache]
    return modules + classes


def bootstrap() -> None:
    """Remember torch's (and the course's) namespaces before any learner code runs."""
    _SNAPSHOT.clear()
    for obj in _guarded_objects():
        _SNAPSHOT.append((obj, dict(vars(obj))))


def reset_global_state() -> None:
    """Undo what a learner's cell may have changed globally: monkey-patched torch functions or
    course code, default dtype/device, grad mode, seeds."""
    import random

    import numpy

    for obj, saved in _SNAPSHOT:
        current = dict(vars(obj))
        for name, value in saved.items():
            if current.get(name, _MISSING) is not value:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(obj, name, value)
        for name in current.keys() - saved.keys():  # e.g. torch.Tensor.softmax shadowing the C method
            if not isinstance(current[name], types.ModuleType):
                with contextlib.suppress(AttributeError, TypeError):
                    delattr(obj, name)
    torch.set_default_dtype(torch.float32)
    torch.set_default_device(None)
    torch.set_grad_enabled(True)
    torch.manual_seed(0)
    numpy.random.seed(0)  # noqa: NPY002 - resetting the legacy global generator is the point
    random.seed(0)


def run_cell(source: str, seconds: float, result_file: str) -> None:
    """Run one learner cell with IPython (magics work), quietly, under a time limit."""
    from IPython import get_ipython

    error = None
    try:
        with _quiet(), time_limit(seconds):
            result = get_ipython().run_cell(source, store_history=False, silent=True)
        failure = result.error_before_exec or result.error_in_exec
        if failure is not None:
            error = error_message(failure)
    except GradingTimeout:
        error = error_message(GradingTimeout())
    Path(result_file).write_text(json.dumps({"error": error}))


def _model(name: str) -> Any:
    """The kernel's own pristine copy of a course model, loaded once (not the learner's `model`,
    which a learner's cell may have changed)."""
    from utils.models import fresh_model

    if name not in _MODELS:
        _MODELS[name] = fresh_model(name)
    return _MODELS[name]


def call(function: str, inputs_file: str, outputs_file: str, seconds: float, probe: str | None = None) -> None:
    """Call the learner's ``function`` on every case; write each outcome for the grader."""
    from IPython import get_ipython

    deadline = time.monotonic() + seconds
    reset_global_state()
    fn = get_ipython().user_ns.get(function, _MISSING)
    if fn is _MISSING:
        import difflib

        names = [n for n, v in get_ipython().user_ns.items() if callable(v) and not n.startswith("_")]
        torch.save({"missing": True, "similar": difflib.get_close_matches(function, names, n=1)}, outputs_file)
        return
    if not callable(fn):
        torch.save({"not_callable": describe(fn)}, outputs_file)
        return
    outcomes = []
    for raw in torch.load(inputs_file, weights_only=True):
        case = Case(args=resolve_models(raw["args"], _model), kwargs=resolve_models(raw["kwargs"], _model), label=raw["label"])
        remaining = max(deadline - time.monotonic(), 0.01)
        with _quiet():
            outcome = call_learner(fn, case, seconds=remaining, probe=probe)
        outcomes.append({"value": portable(outcome.value) if outcome.error is None else None, "error": outcome.error})
        reset_global_state()
    torch.save({"outcomes": outcomes}, outputs_file)
