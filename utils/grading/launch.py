"""Start a grading kernel inside its limits and its sandbox: ``python -m utils.grading.launch [...] -- KERNEL...``.

A kernelspec runs this (`utils.grading.sandbox.Sandbox` writes one per notebook graded, and
`utils.instructor` installs one for nbgrader). It imports no torch, so it starts at once. It

1. moves itself into fresh cgroups capping memory and tasks (processes and threads), where the
   machine lets it, and writes what it set up to ``--report`` (the driver reads it to tell why a
   kernel died, and to remove the cgroups afterwards);
2. sets rlimits: CPU seconds, the largest file written, no core dumps;
3. replaces itself with bubblewrap around KERNEL (``--isolate``, where bubblewrap works) or with
   KERNEL itself. Inside the sandbox the kernel's connection file is visible, the folder of its Unix
   sockets and ``--home`` are writable, and its working directory is visible read-only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

from utils.grading.sandbox import GB, Limits, bwrap_argv, isolation, join_cgroups


def connection_paths(kernel: list[str]) -> tuple[list[Path], list[Path]]:
    """(files to show read-only, folders to make writable) for the kernel's connection: its
    ``-f CONNECTION_FILE``, and the folder of its Unix sockets (the ``ip`` of an ``ipc`` connection,
    which must be an absolute path: grader and kernel work in different folders)."""
    for flag, value in zip(kernel, kernel[1:]):
        if flag == "-f":
            path = Path(value).resolve()
            info = json.loads(path.read_text())
            if info.get("transport") != "ipc":
                return [path], []
            sockets = Path(info["ip"]).parent
            sockets.mkdir(parents=True, exist_ok=True)
            return [path], [sockets]
    return [], []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m utils.grading.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--memory-gb", type=float, default=Limits.memory_gb)
    parser.add_argument("--tasks", type=int, default=Limits.tasks, help="processes and threads")
    parser.add_argument("--cpu", type=int, default=Limits.cpu_seconds, help="CPU seconds per process")
    parser.add_argument("--file-gb", type=float, default=Limits.file_gb)
    parser.add_argument("--cgroup", default=f"course-kernel-{os.getpid()}", help="name of the cgroups to create")
    parser.add_argument("--report", type=Path, help="JSON file saying which limits are enforced how")
    parser.add_argument("--home", type=Path, help="a writable folder for the kernel's HOME (default: its private /tmp)")
    parser.add_argument("--withhold", action="append", default=[], help="a module whose files the kernel must not see")
    parser.add_argument("--isolate", action="store_true", help="run the kernel in bubblewrap, where it works")
    parser.add_argument("kernel", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    kernel = args.kernel[1:] if args.kernel[:1] == ["--"] else args.kernel
    limits = Limits(memory_gb=args.memory_gb, cpu_seconds=args.cpu, tasks=args.tasks, file_gb=args.file_gb)
    cgroups = join_cgroups(args.cgroup, limits)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limits.file_gb * GB),) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    isolated = args.isolate and isolation()[0]
    if isolated:
        visible, writable = connection_paths(kernel)
        writable += [args.home] if args.home else []
        kernel = bwrap_argv(args.home, args.withhold, writable, Path.cwd(), visible) + kernel
    if args.report:
        args.report.write_text(json.dumps({"cgroups": cgroups, "isolated": isolated, "pid": os.getpid()}))
    sys.stdout.flush()
    os.execvp(kernel[0], kernel)


if __name__ == "__main__":
    main()
