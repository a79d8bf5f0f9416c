"""A grading worker: ``python -m utils.grading.worker`` grades one notebook per line of its input.

Each input line is a JSON object ``{"path": ..., "time_limit": ..., "limits": {...}, "isolate": ...}``;
each output line is ``{"path": ..., "report": {...}}`` (the grading contract) or ``{"path": ...,
"unreadable": "message"}``. A worker lives for many notebooks, so torch and the model load once and
each chapter's reference outputs are computed once (`utils.grading.driver` keeps them). Its own
output goes to stderr: stdout carries only the result lines. `utils.grading.batch` runs several.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

from utils.grading.driver import grade_notebook
from utils.grading.notebook import NotebookUnreadable
from utils.grading.sandbox import Limits


def handle(request: dict[str, Any]) -> dict[str, Any]:
    path = request["path"]
    try:
        report = grade_notebook(
            path, time_limit=request["time_limit"], limits=Limits(**request["limits"]), isolate=request["isolate"]
        )
    except NotebookUnreadable as error:
        return {"path": path, "unreadable": str(error)}
    return {"path": path, "report": report}


def main() -> None:
    results = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # anything printed while grading must not mix with results
        for line in sys.stdin:
            if line.strip():
                results.write(json.dumps(handle(json.loads(line))) + "\n")
                results.flush()


if __name__ == "__main__":
    main()
