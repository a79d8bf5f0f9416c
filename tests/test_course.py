"""The course's map: chapters found from the files, and every exercise's six places."""

from __future__ import annotations

import importlib

import pytest

from utils.course import EXERCISE_MODULES, REFERENCE_MODULES, where
from utils.paths import ROOT

EXERCISES = [(c, e.function) for c, m in sorted(EXERCISE_MODULES.items()) for e in importlib.import_module(m).EXERCISES]


def test_every_chapter_has_an_exercise_module_and_a_reference_module():
    from utils.course import chapter_id, notebooks
    from utils.paths import SOLUTIONS_DIR

    chapters = {chapter_id(path.name) for path in notebooks(SOLUTIONS_DIR)}
    assert set(EXERCISE_MODULES) == set(REFERENCE_MODULES) == chapters and len(chapters) == 9
    for module in REFERENCE_MODULES.values():
        importlib.import_module(module)


@pytest.mark.parametrize(("chapter", "function"), EXERCISES, ids=[f"{c}-{f}" for c, f in EXERCISES])
def test_where_names_the_six_places_of_every_exercise(chapter, function):
    places = dict(line.split(":", 1) for line in where(function) if f"chapter{chapter}" in line or f"/{chapter}_" in line)
    assert list(places) == ["statement", "stub", "reference", "check data", "mistakes", "grade"]
    path, line = places["reference"].strip().split(":")
    assert (ROOT / path).read_text().splitlines()[int(line) - 1].startswith(f"def {function}(")
    path, line = places["check data"].split()[0].split(":")
    assert f'function="{function}"' in (ROOT / path).read_text().splitlines()[int(line) - 1]
    path, lines = places["mistakes"].split()[0].split(":")
    fixtures = (ROOT / path).read_text().splitlines()
    assert all(fixtures[int(n) - 1].startswith(f"def {function}__") for n in lines.split(","))
