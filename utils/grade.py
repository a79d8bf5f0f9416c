"""Grade a course notebook: ``python -m utils.grade PATH.ipynb [--json] [--timeout S]``.

How a grade is made (the learner's file is only read, never written):

1. The notebook's setup cells, solution cells and any cells the learner added run in a fresh
   Jupyter kernel (nbclient), each under a time limit. Demo cells (pictures, experiments) and
   check cells are skipped: grading runs only what the checks need.
2. For each exercise of the chapter, the kernel calls the learner's function on the check's
   inputs (sent as a file) and sends the outputs back (as a file, loaded with
   ``weights_only=True``). A time limit per exercise stops endless loops; a kernel that dies or
   hangs is replaced and the remaining exercises are still graded.
3. The reference outputs are computed here, in the grading process, where the learner's code
   cannot reach them, and compared by the same engine as the in-notebook checks (`utils.grading`).

With ``--json`` it prints the grading contract:
``{"notebook", "exercises": [{"id", "points", "max_points", "passed", "message"}], "score",
"max_score"}``. A folder argument grades every notebook in it (a list in JSON, a table otherwise).
Exit status: 0 when graded (whatever the score), 2 when a file cannot be read as a course notebook.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib
import io
import json
import os
import re
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# Grading runs two torch processes at once (this one and the learner's kernel). With OpenMP's
# default busy-waiting, two 2-thread processes on 2 cores ran 30x slower here; passive waiting
# costs ~20% alone and keeps both fast. It must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import nbformat  # noqa: E402
import torch  # noqa: E402

from utils.course import CHAPTERS, chapter_id  # noqa: E402
from utils.errors import CourseError  # noqa: E402
from utils.grading import Case, Exercise, Outcome, Result, Unportable, call_learner, failed, judge, reference_outputs

DEFAULT_TIME_LIMIT = 60.0  # seconds per exercise (and per learner cell)
KERNEL_GRACE = 30.0  # extra seconds before a kernel that ignores the time limit is replaced
ROOT = Path(__file__).resolve().parents[1]


class NotebookUnreadable(CourseError):
    """The file is not a notebook this course can grade."""


# ---------------------------------------------------------------------------------------------
# Reading a notebook


def read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise NotebookUnreadable(f"{path}: cannot read the file ({error})") from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as error:  # nbformat raises several kinds for bad JSON or structure
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NotebookUnreadable(f"{path}: not a valid notebook ({first})") from None
    if not isinstance(nb.get("cells"), list):
        raise NotebookUnreadable(f"{path}: not a valid notebook (no list of cells)")
    return nb


def chapter_of(path: Path, nb: nbformat.NotebookNode) -> str:
    """The chapter number, from the file name (``00_topic.ipynb``) or the notebook's metadata."""
    chapter = chapter_id(Path(path).name) or str(nb.get("metadata", {}).get("course", {}).get("chapter", ""))
    if chapter not in CHAPTERS:
        raise NotebookUnreadable(
            f"{path}: can't tell which chapter this is (name it like chapters/00_topic.ipynb); "
            f"chapters: {', '.join(sorted(CHAPTERS))}"
        )
    return chapter


def exercises_of(chapter: str) -> list[Exercise]:
    return list(importlib.import_module(CHAPTERS[chapter]).EXERCISES)


def cells_to_run(nb: nbformat.NotebookNode) -> list[str]:
    """Sources of the cells a grade needs: setup cells, solution cells and learner-added cells.

    Authored cells carry their role: tag ``setup`` (run), tag ``demo`` (skipped), nbgrader
    ``solution`` (run) or nbgrader ``grade`` (the check itself: skipped, the grader checks).
    A code cell with none of these was added by the learner, and may define helpers: run it.
    """
    sources = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        tags = set(meta.get("tags", []))
        grader = meta.get("nbgrader", {})
        if "demo" in tags or (grader.get("grade") and not grader.get("solution")):
            continue
        source = cell.get("source", "")
        sources.append("".join(source) if isinstance(source, list) else str(source))
    return sources


# ---------------------------------------------------------------------------------------------
# Inside the grading kernel (these functions run in the learner's kernel process)

_MAX_PRINTED = 2000
_MISSING = object()
_SNAPSHOT: list[tuple[Any, dict[str, Any]]] = []
_MODELS: dict[str, Any] = {}


class _Sink(io.TextIOBase):
    """Swallows what the learner's code prints (keeps only the start)."""

    def __init__(self) -> None:
        self.kept = ""

    def write(self, text: str) -> int:
        if len(self.kept) < _MAX_PRINTED:
            self.kept += text[: _MAX_PRINTED - len(self.kept)]
        return len(text)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    sink = _Sink()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _guarded_objects() -> list[Any]:
    import math
    import random

    import einops
    import numpy
    import transformer_lens

    import utils

    modules = [torch, torch.nn.functional, torch.nn, einops, numpy, math, random, transformer_lens, utils]
    modules += [m for name, m in sys.modules.items() if name.startswith("utils.") and m is not None]
    classes = [torch.Tensor, torch.nn.Module, transformer_lens.HookedTransformer, transformer_lens.ActivationCache]
    return modules + classes


def kernel_bootstrap() -> None:
    """Remember torch's (and the course's) namespaces before any learner code runs."""
    _SNAPSHOT.clear()
    for obj in _guarded_objects():
        _SNAPSHOT.append((obj, dict(vars(obj))))


def _reset_global_state() -> None:
    """Undo what a learner's cell may have changed globally: monkey-patched torch functions or
    course code, default dtype/device, grad mode, seeds."""
    import random

    import numpy

    for obj, saved in _SNAPSHOT:
        current = dict(vars(obj))
        for name, value in saved.items():
            if current.get(name, _MISSING) is not value:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(obj, name, value)
        for name in current.keys() - saved.keys():  # e.g. torch.Tensor.softmax shadowing the C method
            if not isinstance(current[name], types.ModuleType):
                with contextlib.suppress(AttributeError, TypeError):
                    delattr(obj, name)
    torch.set_default_dtype(torch.float32)
    torch.set_default_device(None)
    torch.set_grad_enabled(True)
    torch.manual_seed(0)
    numpy.random.seed(0)  # noqa: NPY002 - resetting the legacy global generator is the point
    random.seed(0)


def kernel_run_cell(source: str, seconds: float, result_file: str) -> None:
    """Run one learner cell with IPython (magics work), quietly, under a time limit."""
    from IPython import get_ipython

    from utils.grading import GradingTimeout, error_message, time_limit

    error = None
    try:
        with _quiet(), time_limit(seconds):
            result = get_ipython().run_cell(source, store_history=False, silent=True)
        failure = result.error_before_exec or result.error_in_exec
        if failure is not None:
            error = error_message(failure)
    except GradingTimeout:
        error = error_message(GradingTimeout())
    Path(result_file).write_text(json.dumps({"error": error}))


def _portable(value: Any, depth: int = 0) -> Any:
    """What can travel back to the grader through ``torch.load(weights_only=True)``."""
    if depth > 20:
        return Unportable("a structure nested too deeply")
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            return Unportable("a tensor on the meta device (it has a shape but no values)")
        return value.detach().to("cpu", copy=True).contiguous()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_portable(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict) and all(isinstance(k, (str, int)) for k in value):
        return {k: _portable(v, depth + 1) for k, v in value.items()}
    from utils.grading import describe

    return Unportable(describe(value))


def _to_wire(value: Any) -> Any:
    if isinstance(value, Unportable):
        return {"__unportable__": value.description}
    if isinstance(value, (list, tuple)):
        items = [_to_wire(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    return value


def _from_wire(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__unportable__"}:
            return Unportable(value["__unportable__"])
        return {k: _from_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_from_wire(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def _resolve_models(value: Any) -> Any:
    """Swap the ``{"__model__": name}`` markers for the kernel's own pristine copy of the model."""
    from utils.models import LOADERS

    if isinstance(value, dict) and set(value) == {"__model__"}:
        name = value["__model__"]
        if name not in _MODELS:
            model = LOADERS[name]("cpu")
            model.course_model_name = name
            for param in model.parameters():
                param.requires_grad_(False)
            _MODELS[name] = model
        return _MODELS[name]
    if isinstance(value, (list, tuple)):
        items = [_resolve_models(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _resolve_models(v) for k, v in value.items()}
    return value


def kernel_call(function: str, inputs_file: str, outputs_file: str, seconds: float, probe: str | None = None) -> None:
    """Call the learner's ``function`` on every case; write each outcome for the grader."""
    from IPython import get_ipython

    deadline = time.monotonic() + seconds
    _reset_global_state()
    fn = get_ipython().user_ns.get(function, _MISSING)
    if fn is _MISSING:
        import difflib

        names = [n for n, v in get_ipython().user_ns.items() if callable(v) and not n.startswith("_")]
        torch.save({"missing": True, "similar": difflib.get_close_matches(function, names, n=1)}, outputs_file)
        return
    if not callable(fn):
        from utils.grading import describe

        torch.save({"not_callable": describe(fn)}, outputs_file)
        return
    outcomes = []
    for raw in torch.load(inputs_file, weights_only=True):
        case = Case(args=_resolve_models(raw["args"]), kwargs=_resolve_models(raw["kwargs"]), label=raw["label"])
        remaining = max(deadline - time.monotonic(), 0.01)
        with _quiet():
            outcome = call_learner(fn, case, seconds=remaining, probe=probe)
        value = _portable(outcome.value) if outcome.error is None else None
        outcomes.append({"value": _to_wire(value), "error": outcome.error})
        _reset_global_state()
    torch.save({"outcomes": outcomes}, outputs_file)


# ---------------------------------------------------------------------------------------------
# The grading process: drive a kernel


def _case_to_wire(case: Case) -> dict[str, Any]:
    from transformer_lens import HookedTransformer

    def wire(value: Any) -> Any:
        if isinstance(value, HookedTransformer):
            return {"__model__": value.course_model_name}
        if isinstance(value, (list, tuple)):
            items = [wire(v) for v in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, dict):
            return {k: wire(v) for k, v in value.items()}
        return value

    return {"args": wire(case.args), "kwargs": wire(case.kwargs), "label": case.label}


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
        self.execute("import utils.grade\nutils.grade.kernel_bootstrap()", 120)

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
        code = f"import utils.grade\nutils.grade.kernel_run_cell({source!r}, {seconds!r}, {str(out)!r})"
        self.execute(code, seconds)
        return json.loads(out.read_text())["error"] if out.exists() else "did not finish"

    def call(self, function: str, cases: Sequence[Case], seconds: float, probe: str | None = None) -> dict[str, Any]:
        inputs, outputs = self.file(".pt"), self.file(".pt")
        torch.save([_case_to_wire(c) for c in cases], inputs)
        arguments = ", ".join(repr(a) for a in [function, str(inputs), str(outputs), seconds, probe])
        code = f"import utils.grade\nutils.grade.kernel_call({arguments})"
        self.execute(code, seconds)
        if not outputs.exists():
            return {"crashed": "stopped before it returned (it broke the grader's call)"}
        return torch.load(outputs, weights_only=True)


def _definitions_error(function: str, cell_errors: dict[str, str]) -> str:
    pattern = re.compile(rf"^\s*def\s+{re.escape(function)}\s*\(", re.MULTILINE)
    for source, error in cell_errors.items():
        if pattern.search(source):
            return f"the cell defining `{function}` failed: it {error}"
    return f"`{function}` is not defined: did you rename it, delete its cell, or not run the code defining it?"


def grade_notebook(path: Path | str, time_limit: float = DEFAULT_TIME_LIMIT) -> dict[str, Any]:
    """Grade one notebook; returns the grading contract's object. Raises `NotebookUnreadable`."""
    path = Path(path)
    nb = read_notebook(path)
    exercises = exercises_of(chapter_of(path, nb))
    sources = cells_to_run(nb)

    def expected_outputs() -> list[tuple[list[Case], list[Any]]]:
        torch.manual_seed(0)
        out = []
        for exercise in exercises:
            cases = list(exercise.cases())
            out.append((cases, reference_outputs(exercise, cases)))
        return out

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="course-grade-") as scratch, concurrent.futures.ThreadPoolExecutor(1) as pool:
        references = pool.submit(expected_outputs)  # the reference runs here while the kernel starts
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
                if reply.get("missing"):
                    message = _definitions_error(exercise.function, cell_errors)
                    if reply.get("similar"):
                        message += f" (the notebook defines `{reply['similar'][0]}`: a typo?)"
                    results.append(failed(exercise, message))
                elif "not_callable" in reply:
                    results.append(failed(exercise, f"`{exercise.function}` should be a function, got {reply['not_callable']}"))
                elif "crashed" in reply:
                    results.append(failed(exercise, f"`{exercise.function}` {reply['crashed']}"))
                else:
                    outcomes = [Outcome(value=_from_wire(o["value"]), error=o["error"]) for o in reply["outcomes"]]
                    results.append(judge(exercise, cases, expected, outcomes))
        finally:
            kernel.stop()
    return {
        "notebook": str(path),
        "exercises": [r.as_dict() for r in results],
        "score": float(sum(r.points for r in results)),
        "max_score": float(sum(r.max_points for r in results)),
    }


# ---------------------------------------------------------------------------------------------
# Command line


def _table(report: dict[str, Any]) -> str:
    lines = [f"{report['notebook']}: {report['score']:g} / {report['max_score']:g}"]
    width = max((len(e["id"]) for e in report["exercises"]), default=0)
    for e in report["exercises"]:
        mark = "✓" if e["passed"] else "✗"
        lines.append(f"  {mark} {e['id']:<{width}}  {e['points']:g}/{e['max_points']:g}  {e['message']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description="Grade course notebooks.")
    parser.add_argument("path", type=Path, help="a notebook, or a folder of notebooks")
    parser.add_argument("--json", action="store_true", help="print the grading contract's JSON")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIME_LIMIT, help="seconds per exercise (default 60)")
    args = parser.parse_args(argv)

    folder = args.path.is_dir()
    paths = sorted(args.path.glob("*.ipynb")) if folder else [args.path]
    reports, status = [], 0
    for path in paths:
        try:
            reports.append(grade_notebook(path, time_limit=args.timeout))
        except NotebookUnreadable as error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
    if args.json:
        if folder or reports:
            print(json.dumps(reports if folder else reports[0], indent=1))
    elif folder:
        rows = [(Path(r["notebook"]).name, r["score"], r["max_score"]) for r in reports]
        width = max((len(name) for name, _, _ in rows), default=8)
        print(f"{'notebook':<{width}}  score")
        for name, score, top in rows:
            print(f"{name:<{width}}  {score:g} / {top:g}")
        print(f"{'total':<{width}}  {sum(r[1] for r in rows):g} / {sum(r[2] for r in rows):g}")
    else:
        for report in reports:
            print(_table(report))
    return status


if __name__ == "__main__":
    sys.exit(main())
