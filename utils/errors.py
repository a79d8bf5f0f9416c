"""The course's own exception: shown to a learner as one plain message, not a traceback wall."""

from __future__ import annotations


class CourseError(Exception):
    """An error whose message tells the learner what to do.

    IPython calls ``_render_traceback_`` instead of printing the traceback, so in a notebook the
    learner sees only the message; outside IPython it is an ordinary exception.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{type(self).__name__}:\x1b[0m {self}"]
