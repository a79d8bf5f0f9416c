"""How the course uses the processor: where heavy work runs, and how many threads tiny models get.

Where the course computes (`default_device`): a GPU, where there is one, takes the work that is
self-contained and heavy — collecting activations for an SAE (`utils.data.collect_activations`) and
training SAEs (`utils.sae.training.train_sae`) — and gives its results back on the CPU. Everything a
learner's cells touch (the model from `load_model`, tokens, caches, the exercises) stays on the CPU:
those cells are sized for a CPU, and grading runs there, deterministic and the same on every machine.
`COURSE_DEVICE` overrides the choice (``cpu``, ``cuda``, ``cuda:1``); a grading kernel always uses the CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def default_device() -> str:
    """Where heavy, self-contained work runs: $COURSE_DEVICE if set; the CPU while grading; else a GPU
    where torch sees one (``cuda``); else the CPU."""
    if os.environ.get("COURSE_GRADING"):
        return "cpu"
    if os.environ.get("COURSE_DEVICE"):
        return os.environ["COURSE_DEVICE"]
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: for tiny models (toy models, 8×8 digits) a second
    thread only adds waiting, and is badly slow on a busy machine (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
