"""Where things are: the course's folders, its cache on disk, and the hook names chapters share.

Everything that names a place — a folder of the repository, the cache directory, a hook point
several chapters read — is defined here once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS_DIR = ROOT / "solutions"  # reference notebooks (hand-edited prose, generated solution cells)
CHAPTERS_DIR = ROOT / "chapters"  # learner notebooks (generated)
UTILS_DIR = ROOT / "utils"

# Chapter 02 trains its language-model SAE on the residual stream entering layer 12 of SmolLM2's 30;
# chapters 04a and 04b read the same activations (and chapter 02's SAE) there.
SAE_HOOK = "blocks.12.hook_resid_pre"


def cache_dir() -> Path:
    """Where converted weights, cached activations and trained SAEs live: $COURSE_CACHE_DIR, else
    ~/.cache/mechinterp-course."""
    root = os.environ.get("COURSE_CACHE_DIR") or Path.home() / ".cache" / "mechinterp-course"
    return Path(root)


@contextlib.contextmanager
def computing(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock (``path`` + ``.lock``, flock) while what lives at ``path`` in the cache is computed:
    another process about to compute the same thing (two test workers, two notebooks) waits, then finds it
    made and reads it, instead of computing it a second time. Check ``path`` again inside the block."""
    try:
        import fcntl
    except ImportError:  # not on Linux/macOS: no lock, both compute (each writes its own temporary file)
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "w")  # noqa: SIM115 (closed below, after the block)
    except OSError:  # a read-only cache (a grading sandbox): nothing will be written there either
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield

# Section 04c steers the model after its final norm, where the logits are linear in what is added.
STEER_HOOK = "ln_final.hook_normalized"
