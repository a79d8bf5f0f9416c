"""The course's chapters: their ids, notebooks and modules, found from the files (nothing to register).

A chapter is ``solutions/<id>_<topic>.ipynb`` with its module ``utils/chapter<id>.py``. An id is two
digits, with a letter for the sections of a chapter split into notebooks (``04a``, ``04b``…).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_GLOB = "[0-9][0-9]*_*.ipynb"
_ID = re.compile(r"(\d\d[a-z]?)_")


def chapter_id(name: str) -> str | None:
    """``"04a"`` for ``04a_topic.ipynb``; ``None`` if the name is not a chapter's."""
    found = _ID.match(Path(name).name)
    return found.group(1) if found else None


def notebooks(folder: Path) -> list[Path]:
    """The chapter notebooks in ``folder``, in course order."""
    return sorted(p for p in Path(folder).glob(NOTEBOOK_GLOB) if chapter_id(p.name))


CHAPTERS: dict[str, str] = {
    path.stem.removeprefix("chapter"): f"utils.{path.stem}"
    for path in sorted((ROOT / "utils").glob("chapter[0-9][0-9]*.py"))
}
