"""pytest as a grading front end: each exercise of a learner's notebook is a test item.

    python -m pytest -p utils.grading.pytest_plugin chapters/00_transformerlens_warmup.ipynb --junitxml=grades.xml

Only notebooks named on the command line (or found under a folder named there) are collected. The
notebook is graded once, by the same engine and in the same sandbox as ``python -m utils.grade``
(``--grade-timeout`` and ``--grade-memory`` set its limits); each item passes or fails with that
exercise's message and records ``points`` and ``max_points`` as properties, which JUnit XML carries
(``<property name="points" .../>``) for GitHub Classroom-style autograding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from utils.grading.driver import DEFAULT_TIME_LIMIT, grade_notebook
from utils.grading.notebook import NotebookUnreadable
from utils.grading.sandbox import Limits


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("course grading")
    group.addoption("--grade-timeout", type=float, default=DEFAULT_TIME_LIMIT, help="seconds per exercise (default 60)")
    group.addoption("--grade-memory", type=float, default=Limits.memory_gb, help="GB per grading kernel (default 4)")


def _named(config: Any, path: Path) -> bool:
    """Whether ``path`` is a notebook the command line asked for (itself, or under a folder named)."""
    for arg in config.args:
        named = Path(arg.split("::")[0]).resolve()
        if path.resolve() == named or (named.is_dir() and path.resolve().is_relative_to(named)):
            return True
    return False


def pytest_collect_file(parent: Any, file_path: Path) -> Any:
    if file_path.suffix == ".ipynb" and ".ipynb_checkpoints" not in file_path.parts and _named(parent.config, file_path):
        return GradedNotebook.from_parent(parent, path=file_path)
    return None


class GradedNotebook(pytest.File):
    def collect(self) -> Any:
        config = self.config
        limits = Limits(memory_gb=config.getoption("grade_memory"))
        try:
            report = grade_notebook(self.path, time_limit=config.getoption("grade_timeout"), limits=limits)
        except NotebookUnreadable as error:
            yield Unreadable.from_parent(self, name="notebook", problem=str(error))
            return
        for exercise in report["exercises"]:
            yield GradedExercise.from_parent(self, name=exercise["id"], result=exercise)


class GradedExercise(pytest.Item):
    def __init__(self, *, result: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.result = result
        self.user_properties += [("points", result["points"]), ("max_points", result["max_points"])]

    def runtest(self) -> None:
        if not self.result["passed"]:
            raise ExerciseFailed(self.result["message"])

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, ExerciseFailed):
            return f"{self.name}: 0 / {self.result['max_points']:g} — {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"{self.name} ({self.result['points']:g} / {self.result['max_points']:g} points)"


class Unreadable(pytest.Item):
    def __init__(self, *, problem: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.problem = problem

    def runtest(self) -> None:
        raise ExerciseFailed(self.problem)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        return str(excinfo.value)


class ExerciseFailed(Exception):
    """An exercise lost its points: the grade message says why."""
