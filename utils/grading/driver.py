"""The grading process: grade one notebook in a fresh kernel (``grade_notebook``).

How a grade is made (the learner's file is only read, never written):

1. The notebook's setup cells, solution cells and any cells the learner added run in a fresh
   Jupyter kernel (nbclient), each under a time limit. Demo cells (pictures, experiments) and
   check cells are skipped: grading runs only what the checks need.
2. For each exercise of the chapter, the kernel calls the learner's function on the check's
   inputs (sent as a file) and sends the outputs back (as a file, loaded with
   ``weights_only=True``). A time limit per exercise stops endless loops; a kernel that dies or
   hangs is replaced and the remaining exercises are still graded.
3. The reference outputs are computed here, in the grading process, where the learner's code
   cannot reach them, and compared by the same engine as the in-notebook checks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
import torch

from utils.course import REFERENCE_MODULES
from utils.grading.engine import Case, Exercise, Outcome, Result, failed, judge, reference_outputs
from utils.grading.notebook import cells_to_run, chapter_of, exercises_of, read_notebook
from utils.grading.sandbox import KERNEL_ENV, Limits, Sandbox, warn_once_if_not_isolated
from utils.grading.watchdog import Watchdog
from utils.grading.wire import case_to_wire, from_wire
from utils.paths import ROOT

DEFAULT_TIME_LIMIT = 60.0  # seconds per exercise (and per learner cell)
KERNEL_GRACE = 30.0  # extra seconds before a kernel that ignores the time limit is replaced


class KernelGone(Exception):
    """The kernel died or ignored the time limit; it has been replaced."""


class GradingKernel:
    """A fresh IPython kernel for one notebook, in its sandbox, replaced if the learner's code kills
    or hangs it. ``withheld``: the reference modules the kernel may not use (the graded chapter's)."""

    def __init__(
        self, scratch: Path, withheld: Sequence[str] = (), limits: Limits | None = None, isolate: bool = True, lens: bool = True
    ):
        self.scratch, self.withheld, self.lens = scratch, list(withheld), lens
        self.limits, self.isolate = limits or Limits(), isolate
        self.client: Any = None
        self.sandbox: Sandbox | None = None
        self.watchdog: Watchdog | None = None
        self.counter = 0

    def start(self) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient

        warn_once_if_not_isolated(self.isolate)
        self.sandbox = Sandbox(self.scratch, self.withheld, self.limits, self.isolate)
        self.counter += 1
        km = AsyncKernelManager(
            kernel_name="course-grading",
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(self.sandbox.write_kernelspec())]),
            transport="ipc",  # Unix sockets in the scratch folder: the sandbox has no network
            ip=str(self.scratch / f"ipc{self.counter}"),
            connection_file=str(self.scratch / f"connection{self.counter}.json"),
        )
        resources = {"metadata": {"path": str(self.scratch)}}  # the kernel's working directory
        self.client = NotebookClient(nbformat.v4.new_notebook(), km=km, timeout=None, allow_errors=True, resources=resources)
        env = {**os.environ, **KERNEL_ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._log = open(self.scratch / "kernel.log", "ab")  # the kernel's own chatter stays out of the report
        self._context = self.client.setup_kernel(env=env, stdout=self._log, stderr=self._log)
        self._context.__enter__()
        self.watchdog = Watchdog(km.provisioner.process.pid, self.limits, self.sandbox.anonymous_memory)
        self.execute(f"import utils.grading.kernel\nutils.grading.kernel.bootstrap({self.withheld!r}, {self.lens!r})", 120)

    def stop(self) -> None:
        from jupyter_core.utils import run_sync

        if self.client is not None:
            with contextlib.suppress(Exception):
                self._context.__exit__(None, None, None)
            with contextlib.suppress(Exception):
                if self.client.km is not None and self.client.km.has_kernel:
                    run_sync(self.client.km.shutdown_kernel)(now=True)
            self.watchdog.stop()  # and kills whatever the kernel left running
            self.sandbox.cleanup()
            self.client = None
            self._log.close()

    def death(self) -> str:
        """Why the kernel died, in the words of a grade message."""
        if self.watchdog.reason:
            return self.watchdog.reason
        if self.sandbox.hit_memory_limit():
            return f"used more than the {self.limits.memory_gb:g} GB of memory a kernel may use, so the kernel was stopped"
        if self.watchdog.cpu_seconds >= 0.9 * self.limits.cpu_seconds:
            return f"used up the kernel's {self.limits.cpu_seconds} s of CPU time, so the kernel was stopped"
        return "stopped the kernel (did it call exit() or os._exit(), or crash?)"

    def restart(self) -> None:
        self.stop()
        self.start()

    def execute(self, code: str, seconds: float) -> None:
        """Run code in the kernel; `KernelGone` (after replacing the kernel) if it dies or hangs."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        self.client.timeout = int(seconds + KERNEL_GRACE)
        cell = nbformat.v4.new_code_cell(code)
        self.client.nb.cells = [cell]  # one cell at a time; its outputs are not kept
        try:
            self.client.execute_cell(cell, 0)
        except (CellTimeoutError, DeadKernelError) as error:
            died = isinstance(error, DeadKernelError)
            message = self.death() if died else "ignored the time limit, so the kernel was restarted"
            self.restart()
            raise KernelGone(message) from None

    def file(self, suffix: str) -> Path:
        self.counter += 1
        return self.scratch / f"{self.counter}{suffix}"

    def run_cell(self, source: str, seconds: float) -> str | None:
        out = self.file(".json")
        code = f"import utils.grading.kernel\nutils.grading.kernel.run_cell({source!r}, {seconds!r}, {str(out)!r})"
        self.execute(code, seconds)
        return json.loads(out.read_text())["error"] if out.exists() else "did not finish"

    def call(self, function: str, cases: Sequence[Case], seconds: float, probe: str | None = None) -> dict[str, Any]:
        inputs, outputs = self.file(".pt"), self.file(".pt")
        torch.save([case_to_wire(c) for c in cases], inputs)
        arguments = ", ".join(repr(a) for a in [function, str(inputs), str(outputs), seconds, probe])
        self.execute(f"import utils.grading.kernel\nutils.grading.kernel.call({arguments})", seconds)
        if not outputs.exists():
            return {"crashed": "stopped before it returned (it broke the grader's call)"}
        return torch.load(outputs, weights_only=True)


def _definitions_error(function: str, cell_errors: dict[str, str]) -> str:
    pattern = re.compile(rf"^\s*def\s+{re.escape(function)}\s*\(", re.MULTILINE)
    for source, error in cell_errors.items():
        if pattern.search(source):
            return f"the cell defining `{function}` failed: it {error}"
    return f"`{function}` is not defined: did you rename it, delete its cell, or not run the code defining it?"


def _result(
    exercise: Exercise, cases: list[Case], expected: list[Any], reply: dict[str, Any], cell_errors: dict[str, str]
) -> Result:
    """One exercise's grade from the kernel's reply."""
    if reply.get("missing"):
        message = _definitions_error(exercise.function, cell_errors)
        if reply.get("similar"):
            message += f" (the notebook defines `{reply['similar'][0]}`: a typo?)"
        return failed(exercise, message)
    if "not_callable" in reply:
        return failed(exercise, f"`{exercise.function}` should be a function, got {reply['not_callable']}")
    if "crashed" in reply:
        return failed(exercise, f"`{exercise.function}` {reply['crashed']}")
    outcomes = [Outcome(value=from_wire(o["value"]), error=o["error"]) for o in reply["outcomes"]]
    return judge(exercise, cases, expected, outcomes)


_EXPECTED: dict[str, list[tuple[list[Case], list[Any]]]] = {}
_EXPECTED_LOCK = threading.Lock()


def expected_outputs(chapter: str, exercises: Sequence[Exercise]) -> list[tuple[list[Case], list[Any]]]:
    """Every exercise's cases (hidden ones included) and the reference's outputs on them; computed once
    per chapter and process (they are deterministic), so a worker grading a class pays for them once."""
    with _EXPECTED_LOCK:
        if chapter not in _EXPECTED:
            torch.manual_seed(0)
            out = []
            for exercise in exercises:
                cases = list(exercise.cases())
                out.append((cases, reference_outputs(exercise, cases)))
            _EXPECTED[chapter] = out
        return _EXPECTED[chapter]


def grade_notebook(
    path: Path | str, time_limit: float = DEFAULT_TIME_LIMIT, limits: Limits | None = None, isolate: bool = True
) -> dict[str, Any]:
    """Grade one notebook; returns the grading contract's object. Raises `NotebookUnreadable`.

    The learner's code runs in a sandboxed kernel (`utils.grading.sandbox`; ``isolate=False`` keeps the
    resource limits but not the isolation) that cannot use the chapter's reference implementations.
    """
    path = Path(path)
    nb = read_notebook(path)
    chapter = chapter_of(path, nb)
    exercises = exercises_of(chapter)
    lens = "transformer_lens" in sys.modules  # the chapter's code imported it (01 and 04d don't): guard it in the kernel
    sources = cells_to_run(nb)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="course-grade-") as scratch, concurrent.futures.ThreadPoolExecutor(1) as pool:
        references = pool.submit(expected_outputs, chapter, exercises)  # the reference runs here while the kernel starts
        kernel = GradingKernel(Path(scratch), [REFERENCE_MODULES[chapter]], limits, isolate, lens)
        try:
            kernel.start()
            cell_errors: dict[str, str] = {}
            broken: set[int] = set()

            def replay() -> None:
                for i, source in enumerate(sources):
                    if i in broken:
                        continue
                    try:
                        error = kernel.run_cell(source, time_limit)
                    except KernelGone as gone:
                        broken.add(i)
                        error = f"stopped the kernel ({gone})"
                    if error is not None:
                        cell_errors[source] = error

            replay()
            for exercise, (cases, expected) in zip(exercises, references.result()):
                try:
                    reply = kernel.call(exercise.function, cases, time_limit, exercise.probe)
                except KernelGone as gone:
                    results.append(failed(exercise, f"`{exercise.function}` {gone}"))
                    replay()
                    continue
                results.append(_result(exercise, cases, expected, reply, cell_errors))
        finally:
            kernel.stop()
    return {
        "notebook": str(path),
        "exercises": [r.as_dict() for r in results],
        "score": float(sum(r.points for r in results)),
        "max_score": float(sum(r.max_points for r in results)),
    }
