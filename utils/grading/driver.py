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
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
import torch

from utils.grading.engine import Case, Exercise, Outcome, Result, failed, judge, reference_outputs
from utils.grading.notebook import cells_to_run, chapter_of, exercises_of, read_notebook
from utils.grading.wire import case_to_wire, from_wire
from utils.paths import ROOT

DEFAULT_TIME_LIMIT = 60.0  # seconds per exercise (and per learner cell)
KERNEL_GRACE = 30.0  # extra seconds before a kernel that ignores the time limit is replaced


class KernelGone(Exception):
    """The kernel died or ignored the time limit; it has been replaced."""


class GradingKernel:
    """A fresh IPython kernel for one notebook, restarted if the learner's code kills or hangs it."""

    def __init__(self, workdir: Path, scratch: Path):
        self.workdir, self.scratch = workdir, scratch
        self.client: Any = None
        self.counter = 0

    def start(self) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient

        # Always this interpreter's own kernel, whatever kernelspecs the user has installed.
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
        nb = nbformat.v4.new_notebook()
        self.client = NotebookClient(
            nb, km=km, timeout=None, allow_errors=True, resources={"metadata": {"path": str(self.workdir)}}
        )
        env = dict(os.environ)
        env.update(
            MPLBACKEND="Agg",
            TQDM_DISABLE="1",
            COURSE_GRADING="1",
            OMP_WAIT_POLICY="PASSIVE",
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        )
        self._log = open(self.scratch / "kernel.log", "ab")  # the kernel's own chatter stays out of the report
        self._context = self.client.setup_kernel(env=env, stdout=self._log, stderr=self._log)
        self._context.__enter__()
        self.execute("import utils.grading.kernel\nutils.grading.kernel.bootstrap()", 120)

    def stop(self) -> None:
        from jupyter_core.utils import run_sync

        if self.client is not None:
            with contextlib.suppress(Exception):
                self._context.__exit__(None, None, None)
            with contextlib.suppress(Exception):
                if self.client.km is not None and self.client.km.has_kernel:
                    run_sync(self.client.km.shutdown_kernel)(now=True)
            self.client = None
            self._log.close()

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
            self.restart()
            if died:
                raise KernelGone("stopped the kernel (did it call exit() or os._exit(), or crash?)") from None
            raise KernelGone("ignored the time limit, so the kernel was restarted") from None

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


def expected_outputs(exercises: Sequence[Exercise]) -> list[tuple[list[Case], list[Any]]]:
    """Every exercise's cases (hidden ones included) and the reference's outputs on them."""
    torch.manual_seed(0)
    out = []
    for exercise in exercises:
        cases = list(exercise.cases())
        out.append((cases, reference_outputs(exercise, cases)))
    return out


def grade_notebook(path: Path | str, time_limit: float = DEFAULT_TIME_LIMIT) -> dict[str, Any]:
    """Grade one notebook; returns the grading contract's object. Raises `NotebookUnreadable`."""
    path = Path(path)
    nb = read_notebook(path)
    exercises = exercises_of(chapter_of(path, nb))
    sources = cells_to_run(nb)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="course-grade-") as scratch, concurrent.futures.ThreadPoolExecutor(1) as pool:
        references = pool.submit(expected_outputs, exercises)  # the reference runs here while the kernel starts
        kernel = GradingKernel(path.parent.resolve(), Path(scratch))
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
