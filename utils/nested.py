"""One walker over nested lists, tuples and dicts (the shape of exercise inputs and outputs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DESCEND = object()
"""Returned by a `map_nested` function to say "not a leaf: rebuild this container around its items"."""


class TooDeep(ValueError):
    """The structure is nested deeper than `map_nested` allows (or refers to itself)."""


def map_nested(fn: Callable[[Any], Any], value: Any, max_depth: int = 20) -> Any:
    """``value`` rebuilt with ``fn`` applied to what it holds.

    ``fn`` sees every node, containers first: whatever it returns replaces the node, except
    `DESCEND`, which rebuilds a list, tuple or dict around its items mapped the same way (any other
    node that gets `DESCEND` is kept as it is). Dict keys are kept; a tuple stays a tuple.
    """

    def walk(node: Any, depth: int) -> Any:
        if depth > max_depth:
            raise TooDeep(f"nested more than {max_depth} levels deep")
        out = fn(node)
        if out is not DESCEND:
            return out
        if isinstance(node, (list, tuple)):
            items = [walk(item, depth + 1) for item in node]
            return items if isinstance(node, list) else tuple(items)
        if isinstance(node, dict):
            return {key: walk(item, depth + 1) for key, item in node.items()}
        return node

    return walk(value, 0)


def leaves(value: Any, max_depth: int = 20) -> list[Any]:
    """Every non-container node of ``value``, in order (dict values in insertion order)."""
    found: list[Any] = []

    def collect(node: Any) -> Any:
        if isinstance(node, (list, tuple, dict)):
            return DESCEND
        found.append(node)
        return node

    map_nested(collect, value, max_depth)
    return found
