"""Where things are: the course's folders, its cache on disk, and the hook names chapters share.

Everything that names a place — a folder of the repository, the cache directory, a hook point
several chapters read — is defined here once.
"""

from __future__ import annotations

import os
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

# Section 04c steers the model after its final norm, where the logits are linear in what is added.
STEER_HOOK = "ln_final.hook_normalized"
