"""Where a grading kernel runs: isolated with bubblewrap where it can be, under resource limits always.

An isolated kernel (Linux, `bwrap` from the Debian/Ubuntu package ``bubblewrap``) sees a read-only
view of what a notebook needs — the system's libraries, the Python environment, the course's
``utils/`` package, the model and activation caches — and nothing else: not the other submissions,
not the instructor's home, not ``solutions/`` or ``tests/``, not the reference module of the chapter
it grades (its file reads as empty), no network. It can write only in its private scratch
directory (and a private /tmp), and its environment variables are the few it needs.

Limits (`Limits`) apply with or without isolation: memory and tasks through a cgroup where the
machine allows one (`launch.py` creates it), else a watchdog that samples the kernel's memory and
stops it past the cap; CPU seconds and the largest file through rlimits. Where bubblewrap is
missing or can't run (macOS, Windows, a container without user namespaces) grading still works and
says so once on stderr.

The kernel talks to the grader over Unix sockets in the scratch directory (jupyter_client's
``ipc`` transport): a kernel in its own network namespace cannot reach the grader's TCP ports.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from utils.paths import ROOT, UTILS_DIR, cache_dir

GB = 1024**3
CGROUP_ROOT = Path("/sys/fs/cgroup")
# /etc files a Python kernel reads (the dynamic linker's cache, user and group names, time zone, fonts)
ETC_FILES = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "localtime", "hosts", "fonts"]
KERNEL_ENV = {  # the whole environment of an isolated kernel, besides PATH, HOME and the paths below
    "OMP_WAIT_POLICY": "PASSIVE",
    "MPLBACKEND": "Agg",
    "TQDM_DISABLE": "1",
    "COURSE_GRADING": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LANG": "C.UTF-8",
}


@dataclass(frozen=True)
class Limits:
    """Caps on one grading kernel (``python -m utils.grade --memory GB --cpu-time S``)."""

    memory_gb: float = 4.0
    cpu_seconds: int = 3600  # CPU time of the kernel process over its life (it is replaced when it dies)
    tasks: int = 512  # processes and threads (torch and the kernel use ~40)
    file_gb: float = 2.0  # largest file the kernel may write

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * GB)


@functools.cache
def isolation() -> tuple[bool, str]:
    """(whether kernels can be isolated here, why not if they can't); tried once per process."""
    if not sys.platform.startswith("linux"):
        return False, f"bubblewrap runs on Linux only, this is {sys.platform}"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, "bubblewrap (`bwrap`) is not installed; on Debian or Ubuntu: apt-get install bubblewrap"
    probe = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all", "--die-with-parent", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"bubblewrap could not start ({error})"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"bubblewrap can't create namespaces here ({reason}); user namespaces may be disabled"
    return True, ""


_warned = threading.Event()


def warn_once_if_not_isolated(isolate: bool) -> None:
    ok, reason = isolation()
    if isolate and not ok and not _warned.is_set():
        _warned.set()
        print(
            f"warning: grading WITHOUT isolation: {reason}. Submissions run with your permissions and can read "
            "and write your files; time, memory and CPU limits still apply.",
            file=sys.stderr,
        )


def runtime_paths() -> list[Path]:
    """The Python installation and environment this grader runs in (what a kernel needs to import)."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    candidates |= {p for p in sys.path if p and Path(p).is_dir()}
    candidates.add(str(Path(sys.executable).resolve().parent.parent))
    kept = set()
    for path in map(lambda p: Path(p).resolve(), candidates):
        if path == ROOT or path == Path("/") or (path.is_relative_to(ROOT) and not path.is_relative_to(ROOT / ".venv")):
            continue  # the course itself is bound separately (utils/ only)
        kept.add(path)
    return sorted(p for p in kept if not any(p != q and p.is_relative_to(q) for q in kept))


def hidden_files(modules: list[str]) -> list[Path]:
    """The source and bytecode files of modules a kernel must not see (a chapter's references)."""
    files = []
    for module in modules:
        source = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        files.append(source)
        files += sorted((source.parent / "__pycache__").glob(f"{source.stem}.*.pyc"))
    return [f for f in files if f.exists()]


def bwrap_argv(
    home: Path | None, withheld: list[str], writable: list[Path], workdir: Path, visible: Sequence[Path] = ()
) -> list[str]:
    """bubblewrap's arguments for a kernel: read-only system, Python and course code (minus
    ``withheld`` modules' files) and caches, and ``visible`` files; ``writable`` folders; a private
    /tmp; no network."""
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    for name in ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"]:
        path = Path("/") / name
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    argv += [arg for name in ETC_FILES if (Path("/etc") / name).exists() for arg in ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]  # first: what follows may lie under /tmp
    argv += [arg for path in runtime_paths() for arg in ["--ro-bind", str(path), str(path)]]
    argv += ["--ro-bind", str(UTILS_DIR), str(UTILS_DIR)]
    argv += [arg for path in hidden_files(withheld) for arg in ["--ro-bind", "/dev/null", str(path)]]
    cache = cache_dir().resolve()
    if cache.is_dir():
        argv += ["--ro-bind", str(cache), str(cache)]
    argv += [arg for path in [workdir, *visible] if path not in writable for arg in ["--ro-bind", str(path), str(path)]]
    argv += [arg for path in writable for arg in ["--bind", str(path), str(path)]]
    home = home or Path("/tmp")
    env = {**KERNEL_ENV, "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": "/tmp", "PYTHONPATH": str(ROOT),
           "COURSE_CACHE_DIR": str(cache), "MPLCONFIGDIR": str(home / ".matplotlib")}
    argv += [arg for name, value in env.items() for arg in ["--setenv", name, value]]
    return argv + ["--chdir", str(workdir)]


# ---------------------------------------------------------------------------------------------
# cgroups: hard caps on memory and tasks, where the machine lets this process create them


def _own_cgroup(controller: str) -> Path | None:
    """This process's cgroup directory for ``controller`` (v1), or its unified one (v2, controller "")."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller and controller in controllers.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
        if not controller and controllers == "":
            return CGROUP_ROOT / path.lstrip("/")
    return None


def _join(directory: Path, settings: dict[str, str]) -> bool:
    """Create ``directory`` as a cgroup, write its limits, move this process into it."""
    try:
        directory.mkdir()
        for name, value in settings.items():
            (directory / name).write_text(value)
        (directory / "cgroup.procs").write_text(str(os.getpid()))
        return True
    except OSError:
        with contextlib.suppress(OSError):
            directory.rmdir()
        return False


def join_cgroups(name: str, limits: Limits) -> dict[str, str]:
    """Move this process into new cgroups capping memory and tasks; {"memory": dir, "pids": dir} of those set."""
    joined: dict[str, str] = {}
    memory, pids = _own_cgroup("memory"), _own_cgroup("pids")
    if memory is not None and memory.is_dir():  # cgroup v1 (hybrid hierarchies too)
        caps = {"memory.limit_in_bytes": str(limits.memory_bytes)}
        if (memory / "memory.memsw.limit_in_bytes").exists():
            caps["memory.memsw.limit_in_bytes"] = str(limits.memory_bytes)  # no escape into swap
        if _join(memory / name, caps):
            joined["memory"] = str(memory / name)
        if pids is not None and pids.is_dir() and _join(pids / name, {"pids.max": str(limits.tasks)}):
            joined["pids"] = str(pids / name)
        return joined
    unified = _own_cgroup("")
    if unified is not None and (unified / "cgroup.controllers").exists():  # cgroup v2: needs a delegated subtree
        caps = {"memory.max": str(limits.memory_bytes), "memory.swap.max": "0", "pids.max": str(limits.tasks)}
        if _join(unified / name, caps):
            joined["memory"] = joined["pids"] = str(unified / name)
    return joined


@dataclass
class Sandbox:
    """One grading kernel's sandbox, as the driver sets it up: scratch folder, withheld modules, limits."""

    scratch: Path
    withheld: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    isolate: bool = True
    name: str = field(default_factory=lambda: f"course-grade-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        self.report_file = self.scratch / f"{self.name}.json"

    def kernel_argv(self) -> list[str]:
        """The kernelspec's argv: the launcher (limits, isolation), then the kernel."""
        launcher = [sys.executable, "-m", "utils.grading.launch", *launcher_flags(self.limits, self.name, self.report_file)]
        launcher += ["--home", str(self.scratch), *(f"--withhold={m}" for m in self.withheld)]
        launcher += ["--isolate"] if self.isolate else []
        return [*launcher, "--", sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]

    def write_kernelspec(self) -> Path:
        """A kernelspec folder for jupyter_client (``kernel_name="course-grading"``); returns its parent."""
        folder = self.scratch / "kernels" / "course-grading"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"argv": self.kernel_argv(), "display_name": "course grading kernel", "language": "python"}
        (folder / "kernel.json").write_text(json.dumps(spec))
        return folder.parent

    def launched(self) -> dict:
        """What the launcher reported: the cgroups it created, whether it isolated the kernel."""
        if not getattr(self, "_launched", None):
            try:
                self._launched = json.loads(self.report_file.read_text())
            except (OSError, ValueError):
                return {}
        return self._launched

    def cgroups(self) -> dict[str, str]:
        return self.launched().get("cgroups", {})

    def anonymous_memory(self) -> int | None:
        """Bytes of anonymous memory (the heap: not file cache, shared pages once) in the kernel's cgroup."""
        folder = self.cgroups().get("memory")
        if not folder:
            return None
        try:
            stat = dict(line.split() for line in (Path(folder) / "memory.stat").read_text().splitlines())
        except (OSError, ValueError):
            return None
        value = stat.get("total_rss", stat.get("anon"))  # cgroup v1, v2
        return int(value) if value is not None else None

    def hit_memory_limit(self) -> bool:
        """Whether the kernel's cgroup ran out of memory (the kernel was then killed by the OOM killer)."""
        folder = self.cgroups().get("memory")
        for name in ["memory.events", "memory.oom_control"] if folder else []:
            with contextlib.suppress(OSError, ValueError):
                counts = dict(line.split() for line in (Path(folder) / name).read_text().splitlines() if " " in line)
                if int(counts.get("oom_kill", 0)) > 0:
                    return True
        return False

    def cleanup(self, wait: float = 3.0) -> None:
        """Remove the kernel's cgroups (empty once its processes have exited: wait for that a little), and
        any cgroups made inside them, deepest first (a grader run in a sandbox leaves its kernel's there)."""
        deadline = time.monotonic() + wait
        for top in set(self.cgroups().values()):
            nested = sorted((p for p in Path(top).rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for folder in [*nested, Path(top)]:
                while True:
                    try:
                        folder.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.05)


def launcher_flags(limits: Limits, name: str, report: Path) -> list[str]:
    return [
        f"--memory-gb={limits.memory_gb}", f"--tasks={limits.tasks}", f"--cpu={limits.cpu_seconds}",
        f"--file-gb={limits.file_gb}", f"--cgroup={name}", f"--report={report}",
    ]
