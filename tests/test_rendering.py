"""Slow tier: each learner notebook, rendered to HTML the way GitHub or nbviewer shows it before any cell
is run, in headless Chromium with every outside request blocked: every expected figure is there, loaded.

Needs Debian's `chromium` (`make` installs it as root; elsewhere the test is skipped with the reason).
Screenshots of each notebook's expected figures land in $COURSE_ARTIFACTS (default: pytest's tmp folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from tests.conftest import CHAPTERS, SOLUTIONS, offline_page
from utils import figures
from utils.course import notebooks

pytestmark = pytest.mark.notebooks

@pytest.mark.parametrize("source", notebooks(SOLUTIONS), ids=lambda p: p.name)
def test_the_learner_notebook_shows_its_expected_figures_before_anything_runs(source, browser, tmp_path):
    from nbconvert import HTMLExporter

    learner = nbformat.read(CHAPTERS / source.name, as_version=4)
    assert all(not c.get("outputs") for c in learner.cells if c.cell_type == "code"), "nothing has run"
    html, _ = HTMLExporter().from_notebook_node(learner)
    page_file = tmp_path / f"{source.stem}.html"
    page_file.write_text(html)
    expected = [f for entry in figures.manifest(source).values() for f in entry["figures"]]
    page, _, _ = offline_page(browser, page_file)  # (nbconvert's own CDN scripts are tried and aborted: not asserted)
    shown = page.evaluate(
        """() => [...document.querySelectorAll('img')].filter(i => i.alt.startsWith('Expected figure'))
                 .map(i => ({alt: i.alt, loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth}))"""
    )
    assert len(shown) == len(expected) > 0, f"{len(shown)} expected figures rendered, {len(expected)} made"
    assert all(image["loaded"] for image in shown), [image["alt"] for image in shown if not image["loaded"]]
    assert sorted(image["alt"] for image in shown) == sorted(f["alt"] for f in expected)
    artifacts = Path(os.environ.get("COURSE_ARTIFACTS", tmp_path)) / "expected-figures"
    artifacts.mkdir(parents=True, exist_ok=True)
    for n, image in enumerate(page.query_selector_all("img[alt^='Expected figure']"), start=1):
        image.scroll_into_view_if_needed()
        image.screenshot(path=str(artifacts / f"{source.stem}-{n:02d}.png"))
    page.close()
