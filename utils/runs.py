"""Slow runs kept on disk under the code that made them, so a suite run (or a `make bench`) that changed
nothing there does not redo them.

A notebook run end to end (in the simulated Binder, `tests/test_notebooks.py`) takes minutes and is
deterministic: the same notebook, run with the same code in the same environment, gives the same outputs. So
its outcome — the executed notebook and what was measured — is stored in the course's cache under a
**fingerprint** of everything it was made from:

- the files it names up front (the notebook itself, the files of the environment it ran in);
- every file of the course's package the run actually imported, recorded by the kernel at the end of the
  run (its modules under `utils/`), and every non-Python file under `utils/` (data a module may read);
- a free-form ``extra`` (Python and library versions, limits).

`lookup` recomputes the fingerprint from the files as they are now: a single byte changed in any of them,
or a file gone, and the run is done again; `store` writes the record after a run that passed (a failing run
is never stored). The checks made on the outputs (errors, expected figures, the views in a browser) are
made on every test run, cached or not: only the execution is reused. ``COURSE_FRESH_RUNS=1`` (or
``make test FRESH=1``) ignores every stored run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from utils.paths import ROOT, cache_dir

# Run by the kernel as the notebook's last cell: which of the course's own files (utils/) did it import?
# (Only utils/: the environment's packages are fingerprinted by what the environment is built from.)
IMPORTED_FILES_CODE = f"""
import json as _json, sys as _sys
print(_json.dumps(sorted({{_m.__file__ for _m in list(_sys.modules.values())
                          if (getattr(_m, "__file__", None) or "").startswith({str(ROOT / "utils") + os.sep!r})}})))
"""


def fresh_runs_only() -> bool:
    return os.environ.get("COURSE_FRESH_RUNS", "") not in ("", "0")


def data_files() -> list[Path]:
    """Non-Python files under utils/ (data a module may read at run time)."""
    return sorted(p for p in (ROOT / "utils").rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc"})


def relative(path: Path | str) -> str:
    """``path`` as the fingerprint names it: relative to the clone's root when it is inside it, so that a run
    stored by one clone of the course is found by another clone of the same code (``ROOT`` differs)."""
    path = Path(path)
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def fingerprint(files: list[Path], extra: str) -> str | None:
    """A hash of the files' paths (`relative`) and contents and ``extra``; None if a file is gone."""
    digest = hashlib.sha256(extra.encode())
    for path in sorted({Path(p) for p in files}, key=relative):
        try:
            content = path.read_bytes()
        except OSError:
            return None
        digest.update(f"\0{relative(path)}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


@dataclass
class Run:
    """A stored run: what it measured, and the executed notebook."""

    record: dict
    notebook: Path
    files: list[str] = field(default_factory=list)


class RunCache:
    """Stored runs of one kind (``kind``: "binder" for the notebooks' end-to-end runs)."""

    def __init__(self, kind: str) -> None:
        self.folder = cache_dir() / "test-runs" / kind

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.folder / f"{name}.json", self.folder / f"{name}.ipynb"

    @staticmethod
    def _fingerprint(imported: list[str], inputs: list[Path], extra: str) -> str | None:
        """What a run is stored under: the imported files of `utils/` (named relative to the root, as `store`
        records them), ``inputs``, `data_files`, ``extra``."""
        return fingerprint([ROOT / p for p in imported] + list(inputs) + data_files(), extra)

    def lookup(self, name: str, inputs: list[Path], extra: str) -> Run | None:
        """The stored run of ``name`` if its fingerprint, recomputed from today's files, is the one it was
        stored under; else None."""
        manifest, notebook = self._paths(name)
        if fresh_runs_only() or not manifest.exists() or not notebook.exists():
            return None
        try:
            stored = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return None
        if stored.get("fingerprint") != self._fingerprint(stored.get("files", []), inputs, extra):
            return None
        return Run(stored["record"], notebook, stored["files"])

    def store(self, name: str, inputs: list[Path], imported: list[str], extra: str, record: dict, executed: str) -> None:
        """Keep a run that passed: ``executed`` (the notebook's JSON) and ``record``, under the fingerprint
        of ``inputs``, the ``imported`` files of `utils/` and `data_files`."""
        files = sorted({relative(p) for p in imported})
        key = self._fingerprint(files, inputs, extra)
        if key is None:
            return
        manifest, notebook = self._paths(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        for path, text in [(notebook, executed), (manifest, json.dumps(
                {"fingerprint": key, "files": files, "record": {**record, "stored": time.strftime("%Y-%m-%d %H:%M:%S")}},
                indent=1))]:
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            partial.write_text(text)
            partial.replace(path)  # atomic: a reader sees the old record or the new one
