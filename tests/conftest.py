"""Shared fixtures: the project's paths, the bundled model, the wrong-implementation fixtures, and
each exercise's reference outputs computed once per test session."""

from __future__ import annotations

import importlib
import inspect
import shutil
import time
from pathlib import Path

import pytest

from utils.grading import engine
from utils.models import load_model
from utils.paths import CHAPTERS_DIR as CHAPTERS
from utils.paths import ROOT
from utils.paths import SOLUTIONS_DIR as SOLUTIONS

__all__ = ["CHAPTERS", "CHROMIUM", "CHROMIUM_ARGS", "ROOT", "SOLUTIONS", "wrong_implementations"]
_EXPECTED: dict[tuple, list] = {}


@pytest.fixture(autouse=True)
def reference_runs_once(monkeypatch):
    """Tests vary the learner's function, never the reference: each exercise's reference outputs are
    computed once per session (they are deterministic; the learner's function gets its own copies of
    the inputs). A test cache, so it lives here and not in the chapters' modules."""
    compute = engine.reference_outputs

    def cached(exercise, cases):
        key = (exercise.reference.__module__, exercise.function, tuple(case.label for case in cases))
        if key not in _EXPECTED:
            _EXPECTED[key] = compute(exercise, cases)
        return _EXPECTED[key]

    monkeypatch.setattr(engine, "reference_outputs", cached)


@pytest.fixture(scope="session")
def model():
    return load_model(verbose=False)


def wrong_implementations(chapter: str) -> list[tuple[str, str, object]]:
    """(exercise function, mistake, implementation) for every fixture in utils/mistakes/chapterNN.py."""
    module = importlib.import_module(f"utils.mistakes.chapter{chapter}")
    found = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if "__" in name and not name.startswith("_") and fn.__module__ == module.__name__:
            function, mistake = name.split("__", 1)
            found.append((function, mistake, fn))
    return found


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian's package (`make` installs it as root)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright (the system's executable: nothing is downloaded)."""
    if CHROMIUM is None:
        pytest.skip("needs Chromium (Debian package `chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def offline_page(browser, path: Path, width: int = 1100, height: int = 900):
    """``path`` opened as a file:// page on which every request but file: and data: is aborted and recorded;
    returns (page, the requests that would have left the machine, the page's JavaScript errors)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    outside: list[str] = []
    errors: list[str] = []

    def block(route):
        if route.request.url.startswith(("file:", "data:")):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    page.route("**/*", block)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri(), wait_until="load")
    return page, outside, errors


# The longest files first, in this order (`make test` passes --no-loadscope-reorder so xdist keeps it: by default
# it hands out the files with the most tests first, which put the notebooks' end-to-end runs, ten tests, midway).
# The notebooks take one worker; the other starts with the files that train what the notebooks would otherwise
# train in their own runs (04b's probe features, 05's transcoders, 04a's SAEs), so a cold cache is filled while
# the notebooks 00–03 run.
SLOWEST_FILES = (
    "test_notebooks.py",
    "test_chapter04b.py",
    "test_chapter05.py",
    "test_chapter04a.py",
    "test_instructor.py",
    "test_submissions.py",
    "test_bench.py",
)


def pytest_collection_modifyitems(items):
    """The slowest files first (`SLOWEST_FILES`), the others after them in their usual order. (Spreading the
    notebooks over both workers, `--dist loadscope` with a class per notebook, made the suite slower: two
    notebooks at once on 2 cores, measured.)"""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def prepare_caches(source: Path) -> None:
    """Chapter 05's budgets are for its run with the transcoders on disk (training them is its own budget: ≤ 15
    minutes, measured by `bench/`); a cold cache trains them here first, outside Binder's cap and the cell timeout,
    as `make lab` users train them once. Every other chapter trains what it needs inside the run. (Also before
    nbgrader validates a notebook: its cells time out after 300 s, `utils/instructor.py`.)"""
    if source.name.startswith("05_"):
        from utils.chapter05 import load_transcoders
        from utils.models import load_model

        start = time.perf_counter()
        load_transcoders(load_model(verbose=False), verbose=False)
        print(f"{source.name}: its transcoders are on disk ({time.perf_counter() - start:.0f} s)")
