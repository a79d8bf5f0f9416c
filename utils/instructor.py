"""Run a class with nbgrader: ``python -m utils.instructor init|crosscheck COURSE_DIR``.

``init COURSE_DIR`` makes an nbgrader course whose ``source/NN_topic/NN_topic.ipynb`` are symbolic
links to this repository's ``solutions/`` (one source, never a second copy), with an
``nbgrader_config.py``. From inside COURSE_DIR the usual nbgrader commands then work:

    nbgrader db student add alice                     # or: nbgrader db student import students.csv
    nbgrader generate_assignment 00_transformerlens_warmup
    nbgrader zip_collect 00_transformerlens_warmup    # or nbgrader collect, or copy into submitted/
    nbgrader autograde 00_transformerlens_warmup
    nbgrader export                                   # grades.csv
    nbgrader generate_feedback 00_transformerlens_warmup

``crosscheck COURSE_DIR`` re-grades every submission with `utils.grade` (the learner's function runs
in its own kernel, the reference and the comparison here) and lists every exercise where it
disagrees with nbgrader's gradebook: nbgrader runs the checks inside the learner's kernel, where
a determined learner could monkey-patch them; `utils.grade` cannot be fooled that way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from utils.course import notebooks
from utils.paths import ROOT
from utils.paths import SOLUTIONS_DIR as SOLUTIONS

CONFIG = '''\
"""nbgrader configuration for a class taught from mechinterp-course (made by `python -m utils.instructor init`)."""

import atexit
import os
import shutil
import tempfile

c = get_config()  # noqa: F821 - nbgrader provides get_config

# Autograding kernels inherit this: OpenMP's busy-waiting makes concurrent torch processes crawl.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = "sqlite:///" + {db!r}
# The course's stub, as in chapters/
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
# Model cells take seconds, not nbgrader's default 30 s limit; an endless loop still stops.
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
# Keep a learner's huge printed output from bloating the feedback.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 50
# Autograde in the course's sandboxed kernel (kernels/{kernel}/kernel.json beside this file): read-only
# files, no network, memory/CPU/process caps. It talks over Unix sockets: a kernel without network can't
# reach TCP ports. The references stay visible there (the check cells need them): `crosscheck` is the
# authority on submissions that delegate to them.
os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [{root!r}, os.environ.get("JUPYTER_PATH")]))
c.Execute.kernel_name = {kernel!r}
c.KernelManager.transport = "ipc"
# an absolute socket path: the grader and the kernel run in different folders
_sockets = tempfile.mkdtemp(prefix="mechinterp-ipc-")
atexit.register(shutil.rmtree, _sockets, ignore_errors=True)
c.KernelManager.ip = os.path.join(_sockets, "kernel")
'''
KERNEL = "mechinterp-grading"


def grading_kernelspec(memory_gb: float = 4.0) -> dict:
    """The kernelspec nbgrader's autograde uses: the course's launcher (limits, bubblewrap) around ipykernel."""
    launcher = [sys.executable, "-m", "utils.grading.launch", f"--memory-gb={memory_gb}", "--isolate", "--"]
    return {
        "argv": [*launcher, sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mechinterp grading (sandboxed)",
        "language": "python",
        "env": {"PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"},
    }


def init_course(course_dir: Path, course_id: str = "mechinterp") -> list[str]:
    """Create (or refresh) an nbgrader course directory linked to ``solutions/``; returns assignment ids."""
    course_dir = course_dir.resolve()
    (course_dir / "source").mkdir(parents=True, exist_ok=True)
    assignments = []
    for notebook in notebooks(SOLUTIONS):
        folder = course_dir / "source" / notebook.stem
        folder.mkdir(exist_ok=True)
        link = folder / notebook.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(notebook, folder))
        assignments.append(notebook.stem)
    config = CONFIG.format(course_id=course_id, root=str(course_dir), db=str(course_dir / "gradebook.db"), kernel=KERNEL)
    (course_dir / "nbgrader_config.py").write_text(config)
    spec = course_dir / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps(grading_kernelspec(), indent=1))
    return assignments


def nbgrader_scores(course_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    """{(assignment, student): {grade cell id: points}} from the gradebook."""
    from nbgrader.api import Gradebook

    scores: dict[tuple[str, str], dict[str, float]] = {}
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gradebook:
        for assignment in gradebook.assignments:
            for submission in assignment.submissions:
                for notebook in submission.notebooks:
                    scores[(assignment.name, submission.student.id)] = {grade.name: grade.score for grade in notebook.grades}
    return scores


def crosscheck(course_dir: Path, time_limit: float = 60.0, jobs: int = 1) -> list[str]:
    """Disagreements between nbgrader's gradebook and `utils.grade` on every autograded submission
    (``jobs`` at once). A submission that delegates to the references, which nbgrader's kernel can
    reach, is listed for each exercise it got that way, with `utils.grade`'s message saying so."""
    from utils.grading.batch import Options, grade_many

    scores = sorted(nbgrader_scores(course_dir).items())
    paths = [course_dir / "submitted" / student / assignment / f"{assignment}.ipynb" for (assignment, student), _ in scores]
    results = grade_many(paths, Options(time_limit=time_limit), jobs=jobs, progress=False)
    problems = []
    for ((assignment, student), grades), result in zip(scores, results):
        if "report" not in result:
            why = result.get("unreadable") or result.get("failed")
            problems.append(f"{student} / {assignment}: utils.grade could not grade it ({why})")
            continue
        for exercise in result["report"]["exercises"]:
            theirs = grades.get(f"check_{exercise['id']}")
            if theirs is None or abs(theirs - exercise["points"]) > 1e-9:
                problems.append(
                    f"{student} / {assignment} / {exercise['id']}: nbgrader gave {theirs}, "
                    f"utils.grade gives {exercise['points']:g} ({exercise['message']})"
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.instructor", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["init", "crosscheck"])
    parser.add_argument("course_dir", type=Path)
    parser.add_argument("--course-id", default="mechinterp")
    parser.add_argument("--jobs", type=int, default=1, help="crosscheck: submissions graded at once")
    args = parser.parse_args(argv)
    if args.command == "init":
        for assignment in init_course(args.course_dir, args.course_id):
            print(f"source/{assignment}/{assignment}.ipynb -> {SOLUTIONS.relative_to(ROOT)}/{assignment}.ipynb")
        print(f"nbgrader course ready in {args.course_dir}: cd there and run nbgrader commands")
        return 0
    problems = crosscheck(args.course_dir.resolve(), jobs=args.jobs)
    for problem in problems:
        print(problem)
    print("nbgrader and utils.grade agree on every submission" if not problems else f"{len(problems)} disagreement(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
