"""How a case's inputs and the learner's outputs cross between the grader and the grading kernel.

Both travel as files written with ``torch.save`` and read with ``torch.load(weights_only=True)``,
which refuses anything but tensors, numbers, strings and containers of them — so nothing the
learner returns can run code in the grader. Two things need a stand-in on the way:

- a course model in the inputs travels as ``{"__model__": name}``; the kernel swaps in its own copy;
- an output that can't travel (a generator, a module, a meta tensor) comes back as
  ``{"__unportable__": description}`` and becomes an `Unportable`, which `match` reports plainly.
"""

from __future__ import annotations

from typing import Any

import torch

from utils.grading.engine import Case, Unportable, describe, models_among
from utils.nested import DESCEND, TooDeep, map_nested

MODEL = "__model__"
UNPORTABLE = "__unportable__"


def case_to_wire(case: Case) -> dict[str, Any]:
    """A case's inputs with every course model replaced by its name (grader side)."""
    def wire(value: Any) -> Any:
        return {MODEL: value.course_model_name} if models_among([value]) else DESCEND

    return {"args": map_nested(wire, case.args), "kwargs": map_nested(wire, case.kwargs), "label": case.label}


def resolve_models(value: Any, load: Any) -> Any:
    """Swap each ``{"__model__": name}`` for ``load(name)`` (kernel side)."""
    return map_nested(lambda v: load(v[MODEL]) if isinstance(v, dict) and set(v) == {MODEL} else DESCEND, value)


def portable(value: Any) -> Any:
    """What can travel back through ``torch.load(weights_only=True)``; the rest as markers (kernel side)."""

    def convert(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            if v.device.type == "meta":
                return {UNPORTABLE: "a tensor on the meta device (it has a shape but no values)"}
            return v.detach().to("cpu", copy=True).contiguous()
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if type(v).__module__ == "numpy" and getattr(v, "shape", None) == ():
            return v.item()
        if isinstance(v, (list, tuple)) or (isinstance(v, dict) and all(isinstance(k, (str, int)) for k in v)):
            return DESCEND
        return {UNPORTABLE: describe(v)}

    try:
        return map_nested(convert, value)
    except TooDeep:
        return {UNPORTABLE: "a structure nested too deeply"}


def from_wire(value: Any) -> Any:
    """The learner's output as the grader judges it: markers become `Unportable` (grader side)."""
    return map_nested(lambda v: Unportable(v[UNPORTABLE]) if isinstance(v, dict) and set(v) == {UNPORTABLE} else DESCEND, value)
