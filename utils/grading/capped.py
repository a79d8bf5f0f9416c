"""Run a notebook end to end in a kernel whose memory a cgroup caps, as Binder caps it, and measure it.

The kernel starts through the grader's launcher (`utils.grading.launch`), which moves it into a fresh
cgroup capped at ``memory_gb``. A cgroup is charged for the file pages it reads first, and Binder's
container starts with none cached: `drop_page_cache` (root only) empties the machine's page cache so
the model's file and the libraries are charged to the notebook's cgroup as they would be on Binder.

Used by the notebook tier of the tests (`tests/test_notebooks.py`) and by the benchmark's chapters and
grading sections (`bench/chapters.py`, `bench/grading.py`). Where the machine gives no cgroup the run is
not capped, and says so (`cgroup_available`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from utils.grading.sandbox import GB, Limits, Sandbox, launcher_flags
from utils.paths import ROOT


def capped_kernelspec(python: Path, folder: Path, memory_gb: float, name: str = "binder") -> tuple[Path, Sandbox]:
    """A kernelspec (``name``) whose kernel runs `python` under a ``memory_gb`` cap; (kernels folder, the
    grader's `Sandbox` record of it: what the launcher set up, and its `cleanup`)."""
    limits = Limits(memory_gb=memory_gb, cpu_seconds=36000, file_gb=8.0)
    sandbox = Sandbox(scratch=folder, limits=limits, isolate=False, name=f"course-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    argv = [str(python), "-m", "utils.grading.launch", *launcher_flags(limits, sandbox.name, sandbox.report_file), "--",
            str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = folder / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": f"{name} (capped)", "language": "python"}))
    return spec.parent, sandbox


def drop_page_cache() -> None:
    """Empty the machine's page cache (root only; elsewhere nothing happens and files cached by earlier
    runs are not charged to the notebook's cgroup)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        pass


def peak_gb(launched: dict) -> float | None:
    """The most memory the launched cgroup was ever charged (page cache included), in GB; None without one."""
    folder = launched.get("cgroups", {}).get("memory")
    for name in ["memory.max_usage_in_bytes", "memory.peak"] if folder else []:  # cgroup v1, v2
        try:
            return int((Path(folder) / name).read_text()) / GB
        except (OSError, ValueError):
            continue
    return None


class AnonymousPeak:
    """Samples a sandbox's anonymous memory (`Sandbox.anonymous_memory`) every ``every`` s in a thread; keeps the peak."""

    def __init__(self, sandbox: Sandbox, every: float = 0.1):
        self.sandbox, self.every, self.peak = sandbox, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sandbox.anonymous_memory() or 0)
            self._stop.wait(self.every)

    def __enter__(self) -> AnonymousPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def execute_capped(nb: Any, folder: Path, memory_gb: float, python: Path | None = None, env: dict[str, str] | None = None,
                   timeout: int = 900, allow_errors: bool = False) -> dict[str, Any]:
    """Execute ``nb`` (in place) in a fresh kernel under a ``memory_gb`` cap, from an empty page cache.

    Returns {"completed": True or why not ("kernel died: ..." / "memory limit hit: ..."), "capped": whether a
    cgroup enforced the cap, "seconds", "cgroup_peak_gb" (page cache included), "anonymous_peak_gb" (sampled)}.
    A cell's error raises nbclient's `CellExecutionError` unless ``allow_errors``."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    kernels, sandbox = capped_kernelspec(python or Path(sys.executable), folder, memory_gb)
    km = AsyncKernelManager(kernel_name="binder", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=allow_errors, resources={"metadata": {"path": str(folder)}})
    completed: bool | str = True
    drop_page_cache()
    start = time.perf_counter()
    with AnonymousPeak(sandbox) as anonymous:
        try:
            client.execute(env=env or dict(os.environ))
        except DeadKernelError as error:
            completed = f"kernel died ({error})"
        finally:
            run_sync(km.shutdown_kernel)(now=True)  # nbclient leaves a kernel it did not create running
            seconds = time.perf_counter() - start
            peak = peak_gb(sandbox.launched())
            if completed is not True and sandbox.hit_memory_limit():
                completed = f"memory limit hit: the kernel was killed past {memory_gb:g} GB"
            sandbox.cleanup()
    return {"completed": completed, "capped": bool(sandbox.cgroups().get("memory")), "seconds": round(seconds, 1),
            "cgroup_peak_gb": None if peak is None else round(peak, 3),
            "anonymous_peak_gb": round(anonymous.peak / GB, 3) if anonymous.peak else None}


def cgroup_available(memory_gb: float = 1.5) -> str:
    """"" if the launcher can cap memory with a cgroup here, else why not (a launcher run of `true`)."""
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Sandbox(scratch=Path(tmp), limits=Limits(memory_gb=memory_gb), isolate=False,
                          name=f"course-probe-{os.getpid()}")
        flags = launcher_flags(sandbox.limits, sandbox.name, sandbox.report_file)
        command = [sys.executable, "-m", "utils.grading.launch", *flags, "--", "true"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        memory = sandbox.cgroups().get("memory")
        sandbox.cleanup()
    return "" if memory else f"no memory cgroup can be created here (launcher exit {done.returncode}); not measured"
