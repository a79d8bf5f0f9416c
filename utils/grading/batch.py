"""Grading a class: many notebooks in parallel, on this machine or on a Dask cluster.

``grade_many(paths, options, jobs=N)`` grades every notebook with N workers (`utils.grading.worker`
processes, each starting one sandboxed kernel per notebook) and returns the reports in the order of
``paths``, whatever order they finish in. A worker that dies or hangs costs only the notebook it was
grading (that notebook gets a report saying so; the worker is replaced). With ``results`` (a JSON
Lines file) every finished report is appended at once, and a later run with the same file skips the
notebooks already graded whose bytes have not changed: an interrupted run resumes.

``backend="dask"`` runs the same workers as Dask tasks (``dask.distributed``): a ``LocalCluster`` of
``jobs`` workers by default, or any scheduler address — a SLURM cluster with ``dask-jobqueue``, a
Kubernetes one with ``dask-kubernetes`` (README, "Grading a class at once"). Results are the same.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.grading.driver import DEFAULT_TIME_LIMIT, KERNEL_GRACE
from utils.grading.sandbox import Limits
from utils.paths import ROOT

Report = dict[str, Any]  # {"path", "report"} or {"path", "unreadable"}


@dataclass(frozen=True)
class Options:
    """How each notebook is graded (the same for every worker and backend)."""

    time_limit: float = DEFAULT_TIME_LIMIT
    limits: Limits = field(default_factory=Limits)
    isolate: bool = True

    def request(self, path: Path) -> dict[str, Any]:
        limits = dataclasses.asdict(self.limits)
        return {"path": str(path), "time_limit": self.time_limit, "limits": limits, "isolate": self.isolate}

    def deadline(self, path: Path) -> float:
        """Seconds a worker may spend on one notebook before it counts as hung: every cell and exercise
        at its time limit, plus kernel restarts."""
        try:
            cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError, AttributeError):
            cells = []
        return (len(cells) + 40) * (self.time_limit + KERNEL_GRACE) + 300


class Worker:
    """One ``python -m utils.grading.worker`` process, replaced when it dies or hangs."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        return subprocess.Popen(
            [sys.executable, "-m", "utils.grading.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
        )

    def grade(self, path: Path, options: Options) -> Report:
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        answer: queue.Queue[str] = queue.Queue()
        try:
            self.process.stdin.write(json.dumps(options.request(path)) + "\n")
            self.process.stdin.flush()
            reader = threading.Thread(target=lambda: answer.put(self.process.stdout.readline()), daemon=True)
            reader.start()
            line = answer.get(timeout=options.deadline(path))
        except (OSError, queue.Empty):
            line = ""
        if line.strip():
            return json.loads(line)
        self.close()
        return {"path": str(path), "failed": "the grading process died or hung on this notebook (its other work is unaffected)"}

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class ResultsFile:
    """Finished reports as JSON Lines, keyed by path and content hash: what makes a run resumable."""

    def __init__(self, path: Path | None):
        self.path, self.done = path, {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.done[(entry["path"], entry["sha256"])] = entry["result"]
        self._lock = threading.Lock()

    def get(self, path: Path) -> Report | None:
        return self.done.get((str(path), file_hash(path)))

    def add(self, path: Path, result: Report) -> None:
        if self.path is None:
            return
        with self._lock, self.path.open("a") as out:
            out.write(json.dumps({"path": str(path), "sha256": file_hash(path), "result": result}) + "\n")


def _run_local(todo: Sequence[Path], options: Options, jobs: int, done: Callable[[Path, Report], None]) -> None:
    workers: queue.Queue[Worker] = queue.Queue()
    for _ in range(jobs):
        workers.put(Worker())

    def one(path: Path) -> None:
        worker = workers.get()
        try:
            done(path, worker.grade(path, options))
        finally:
            workers.put(worker)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, todo))
    while not workers.empty():
        workers.get().close()


_DASK_WORKER: Worker | None = None


def _grade_on_dask_worker(path: str, options: Options) -> Report:
    """A Dask task: grade one notebook with this Dask worker's own grading worker process."""
    global _DASK_WORKER
    if _DASK_WORKER is None:
        _DASK_WORKER = Worker()
    return _DASK_WORKER.grade(Path(path), options)


def _run_dask(
    todo: Sequence[Path], options: Options, jobs: int, done: Callable[[Path, Report], None], scheduler: str | None
) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None if scheduler else LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
    with Client(scheduler or cluster) as client:
        futures = {client.submit(_grade_on_dask_worker, str(p), options, pure=False, retries=1): p for p in todo}
        for future in as_completed(futures):
            path = futures[future]
            try:
                done(path, future.result())
            except Exception as error:  # a Dask worker lost twice: this notebook only
                done(path, {"path": str(path), "failed": f"the Dask worker grading it was lost ({type(error).__name__})"})
    if cluster is not None:
        cluster.close()


def grade_many(
    paths: Iterable[Path], options: Options | None = None, jobs: int = 1, results: Path | None = None,
    backend: str = "local", scheduler: str | None = None, progress: bool = True,
) -> list[Report]:
    """Grade every notebook in ``paths`` (see the module's docstring); reports in the order given."""
    from tqdm.auto import tqdm

    paths, options = [Path(p) for p in paths], options or Options()
    store = ResultsFile(results)
    out: dict[Path, Report] = {p: r for p in paths if (r := store.get(p)) is not None}
    todo = [p for p in paths if p not in out]
    bar = tqdm(total=len(paths), initial=len(out), desc="grading", unit="notebook", disable=not progress, file=sys.stderr)
    lock = threading.Lock()

    def done(path: Path, report: Report) -> None:
        with lock:
            out[path] = report
            store.add(path, report)
            bar.update(1)

    try:
        if todo and backend == "dask":
            _run_dask(todo, options, jobs, done, scheduler)
        elif todo:
            _run_local(todo, options, jobs, done)
    finally:
        bar.close()
    return [out[p] for p in paths]
