"""Shared fixtures: the project's paths, the bundled model, the wrong-implementation fixtures."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from utils.models import load_model

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
CHAPTERS = ROOT / "chapters"


@pytest.fixture(scope="session")
def model():
    return load_model(verbose=False)


def wrong_implementations(chapter: str) -> list[tuple[str, str, object]]:
    """(exercise function, mistake, implementation) for every fixture in tests/wrong/chapterNN.py."""
    module = importlib.import_module(f"tests.wrong.chapter{chapter}")
    found = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if "__" in name and not name.startswith("_") and fn.__module__ == module.__name__:
            function, mistake = name.split("__", 1)
            found.append((function, mistake, fn))
    return found


SLOWEST_FILES = ("test_notebooks.py", "test_instructor.py")


def pytest_collection_modifyitems(items):
    """The slowest files first: under `make test` (`-n 2 --dist loadfile`) each starts on its own worker
    and the other files fill in around them, instead of one long file starting last."""
    items.sort(key=lambda item: item.path.name not in SLOWEST_FILES)
