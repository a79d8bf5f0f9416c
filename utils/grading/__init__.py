"""Grading: one engine for the in-notebook checks, the grading CLI, pytest and nbgrader.

- `engine`    exercises as data (`Exercise`, `Case`), `match`, `call_learner`, `judge`;
- `checks`    the in-notebook ``check.<function>(fn)`` object;
- `notebook`  reading a submission: which chapter, which cells a grade runs;
- `kernel`    what runs inside the learner's grading kernel (and nothing else does);
- `wire`      how inputs and outputs cross between the grader and that kernel;
- `sandbox`   where a kernel runs: isolation (bubblewrap) and limits; `launch` starts it there;
- `watchdog`  a kernel's memory, CPU time and processes, watched from outside;
- `driver`    the grading process for one notebook: start a kernel, run the learner's cells, call, judge;
- `batch`     many notebooks in parallel (`worker` processes, or Dask); `export` gradebooks and feedback;
- `pytest_plugin`  each exercise of a notebook as a pytest item (JUnit XML for autograding).

The command line is `utils.grade` (``python -m utils.grade``). This package imports nothing itself,
so the kernel launcher starts without loading torch.
"""
