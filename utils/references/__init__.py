"""The reference implementations, one module per chapter (``chapterNN.py``).

Each exercise's solution is written once, here; `make release` copies it into the solution cell of
the chapter's reference notebook. A grading kernel never sees the module of the chapter it grades
(`utils.grading.sandbox`): a submission can't import, exec or read the answers it is graded against.
"""
