"""What runs inside the learner's grading kernel — and only there.

The driver (`utils.grading.driver`) starts a fresh kernel, runs `bootstrap` first, then the
learner's cells one by one with `run_cell`, then `call` once per exercise. Everything the learner's
code returns leaves this process as a file (`utils.grading.wire`); the references and the
comparison stay in the grading process. Between calls `reset_global_state` undoes what a learner's
cell may have changed globally (monkey-patched torch or course code, default dtype, seeds).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import io
import json
import sys
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from utils.grading.engine import Case, GradingTimeout, ReferenceUnavailable, call_learner, describe, error_message, time_limit
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


def _guarded_objects(lens: bool) -> list[Any]:
    import math
    import random

    import einops
    import numpy

    import utils

    modules = [torch, torch.nn.functional, torch.nn, einops, numpy, math, random, utils]
    modules += [m for name, m in sys.modules.items() if name.startswith("utils.") and m is not None]
    classes = [torch.Tensor, torch.nn.Module]
    if lens:
        import transformer_lens

        modules.append(transformer_lens)
        classes += [transformer_lens.HookedTransformer, transformer_lens.ActivationCache]
    return modules + classes


class Withheld(types.ModuleType):
    """A reference module as a grading kernel sees it: every name is a function that raises
    `ReferenceUnavailable`, so a notebook (and the course's helpers) still import, but nothing
    graded can delegate to the answers."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        qualified = f"`{self.__name__}.{name}`"

        def withheld(*args: Any, **kwargs: Any) -> Any:
            raise ReferenceUnavailable(qualified)

        withheld.__name__ = withheld.__qualname__ = name
        return withheld


class WithholdReferences(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """First on ``sys.meta_path``: imports of the withheld modules get a `Withheld` module."""

    def __init__(self, modules: Sequence[str]):
        self.modules = set(modules)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(fullname, self) if fullname in self.modules else None

    def create_module(self, spec: Any) -> types.ModuleType:
        return Withheld(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        pass

    def enforce(self) -> None:
        """(Re)install the finder first and drop any real copy of a withheld module."""
        if not sys.meta_path or sys.meta_path[0] is not self:
            sys.meta_path[:] = [self] + [f for f in sys.meta_path if f is not self]
        for name in self.modules:
            if name in sys.modules and not isinstance(sys.modules[name], Withheld):
                del sys.modules[name]
            parent, _, leaf = name.rpartition(".")
            held = getattr(sys.modules.get(parent), leaf, None)
            if isinstance(held, types.ModuleType) and not isinstance(held, Withheld):
                delattr(sys.modules[parent], leaf)  # `from parent import leaf` would find the real one


_GUARD = WithholdReferences([])


def bootstrap(withheld: Sequence[str] = (), lens: bool = True) -> None:
    """Before any learner code runs: withhold the graded chapter's reference module, and remember
    torch's (and the course's) namespaces so that `reset_global_state` can restore them. ``lens``: also
    TransformerLens's (it is imported for that, ~3 s: the driver asks for it when the chapter's code uses it)."""
    _GUARD.modules = set(withheld)
    _GUARD.enforce()
    _SNAPSHOT.clear()
    for obj in _guarded_objects(lens):
        _SNAPSHOT.append((obj, dict(vars(obj))))


def reset_global_state() -> None:
    """Undo what a learner's cell may have changed globally: monkey-patched torch functions or
    course code, default dtype/device, grad mode, seeds."""
    import random

    import numpy

    _GUARD.enforce()
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
