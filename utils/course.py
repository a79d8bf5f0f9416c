"""The course's chapters: their ids, notebooks and modules, found from the files (nothing to register).

A chapter is ``solutions/<id>_<topic>.ipynb`` with two modules: its exercise module
``utils/chapter<id>.py`` (data, helpers and plots the notebook imports, and the exercise table its
checks run) and its reference module ``utils/references/chapter<id>.py`` (the reference
implementation of every exercise, the one text `make release` copies into the solution cells).
An id is two digits, with a letter for the sections of a chapter split into notebooks (``04a``…).
"""

from __future__ import annotations

import re
from pathlib import Path

from utils.paths import UTILS_DIR

NOTEBOOK_GLOB = "[0-9][0-9]*_*.ipynb"
_ID = re.compile(r"(\d\d[a-z]?)_")


def chapter_id(name: str) -> str | None:
    """``"04a"`` for ``04a_topic.ipynb``; ``None`` if the name is not a chapter's."""
    found = _ID.match(Path(name).name)
    return found.group(1) if found else None


def notebooks(folder: Path) -> list[Path]:
    """The chapter notebooks in ``folder``, in course order."""
    return sorted(p for p in Path(folder).glob(NOTEBOOK_GLOB) if chapter_id(p.name))


EXERCISE_MODULES: dict[str, str] = {
    path.stem.removeprefix("chapter"): f"utils.{path.stem}" for path in sorted(UTILS_DIR.glob("chapter[0-9][0-9]*.py"))
}
"""Chapter id -> its exercise module (``"00"`` -> ``"utils.chapter00"``)."""

REFERENCE_MODULES: dict[str, str] = {chapter: f"utils.references.chapter{chapter}" for chapter in EXERCISE_MODULES}
"""Chapter id -> its reference module (``"00"`` -> ``"utils.references.chapter00"``)."""


def where(function: str) -> list[str]:
    """The six places of an exercise, as lines ``what: file:line``: its statement (the markdown cell
    before its solution cell), stub, reference, check data, wrong-implementation fixtures and grade."""
    import importlib
    import inspect

    import nbformat

    from utils.paths import CHAPTERS_DIR, ROOT, SOLUTIONS_DIR

    found = []
    for chapter, module_name in EXERCISE_MODULES.items():
        module = importlib.import_module(module_name)
        if not any(exercise.function == function for exercise in module.EXERCISES):
            continue
        source = next(p for p in notebooks(SOLUTIONS_DIR) if chapter_id(p.name) == chapter)
        cells = nbformat.read(source, as_version=4).cells
        index = next(i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade_id") == function)
        statement = max(i for i in range(index) if cells[i].cell_type == "markdown")
        reference = getattr(importlib.import_module(REFERENCE_MODULES[chapter]), function)
        table = inspect.getsource(module).splitlines()
        entry = next(n for n, line in enumerate(table, 1) if f'function="{function}"' in line)
        wrong = ROOT / "utils" / "mistakes" / f"chapter{chapter}.py"
        fixtures = [n for n, line in enumerate(wrong.read_text().splitlines(), 1) if line.startswith(f"def {function}__")]
        rel = lambda path: Path(path).resolve().relative_to(ROOT)  # noqa: E731
        found += [
            f"statement:      {rel(source)} cell {statement} (markdown), and the docstring of the reference",
            f"stub:           {rel(CHAPTERS_DIR / source.name)} cell {index}",
            f"reference:      {rel(inspect.getsourcefile(reference))}:{inspect.getsourcelines(reference)[1]}",
            f"check data:     {rel(inspect.getsourcefile(module))}:{entry} (Exercise, its cases and tolerances)",
            f"mistakes:       {rel(wrong)}:{','.join(map(str, fixtures))} ({len(fixtures)} functions {function}__*)",
            f"grade:          its check cell (check_{function}); python -m utils.grade {rel(CHAPTERS_DIR / source.name)}",
        ]
    return found


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "where":
        sys.exit("usage: python -m utils.course where EXERCISE_FUNCTION   (e.g. attention_pattern)")
    places = where(sys.argv[2])
    print("\n".join(places) if places else f"no exercise named {sys.argv[2]!r}")
    sys.exit(0 if places else 1)
