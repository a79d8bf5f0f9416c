"""Generate the learners' notebooks (``chapters/``) from the reference notebooks (``solutions/``).

``python -m utils.release``          rewrite chapters/ from solutions/
``python -m utils.release --check``  exit 1 (and say which) if chapters/ is out of date

It runs nbgrader's own preprocessors, as ``nbgrader generate_assignment`` does: code between
``### BEGIN SOLUTION`` / ``### END SOLUTION`` becomes a stub that raises NotImplementedError, hidden
tests are removed, outputs cleared, check cells locked and checksummed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)

from utils.course import notebooks

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, CHAPTERS = ROOT / "solutions", ROOT / "chapters"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The learner's copy of a reference notebook (a new object; the argument is not changed)."""
    nb = nbformat.from_dict(nbformat.from_dict(nb))  # deep copy
    resources: dict = {}
    for preprocessor in [
        CheckCellMetadata(),
        ClearSolutions(code_stub={"python": STUB}, enforce_metadata=True),
        ClearHiddenTests(enforce_metadata=True),
        ClearMarkScheme(enforce_metadata=True),
        ClearOutput(),
        LockCells(lock_grade_cells=True, lock_readonly_cells=True),
        ComputeChecksums(),
    ]:
        nb, resources = preprocessor.preprocess(nb, resources)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def pairs() -> list[tuple[Path, Path]]:
    return [(source, CHAPTERS / source.name) for source in notebooks(SOLUTIONS)]


def stale() -> list[str]:
    """Chapters that are missing, differ from their generated version, or have no solution."""
    problems = []
    for source, target in pairs():
        want = render(student_version(nbformat.read(source, as_version=4)))
        if not target.exists():
            problems.append(f"{target.relative_to(ROOT)} is missing")
        elif target.read_text(encoding="utf-8") != want:
            problems.append(f"{target.relative_to(ROOT)} differs from what {source.relative_to(ROOT)} generates")
    sources = {source.name for source, _ in pairs()}
    orphans = [p for p in sorted(CHAPTERS.glob("*.ipynb")) if p.name not in sources]
    problems += [f"{p.relative_to(ROOT)} has no reference notebook" for p in orphans]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description="Generate chapters/ from solutions/.")
    parser.add_argument("--check", action="store_true", help="only check that chapters/ is up to date")
    args = parser.parse_args()
    if args.check:
        problems = stale()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("Run `make release` to regenerate chapters/ from solutions/.", file=sys.stderr)
        return 1 if problems else 0
    CHAPTERS.mkdir(exist_ok=True)
    for source, target in pairs():
        target.write_text(render(student_version(nbformat.read(source, as_version=4))), encoding="utf-8")
        print(f"{source.relative_to(ROOT)} -> {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
