"""Known mistakes: plausible wrong implementations of every exercise, one module per chapter.

A function ``<exercise>__<mistake>`` in ``chapterNN.py`` is one mistake; its docstring completes the
sentence "This is what you get when …". The test suite requires every one of them to lose its
points (at least two per exercise), and a learner whose output matches one is told which mistake it
is (`utils.grading.engine.diagnosis`).
"""
