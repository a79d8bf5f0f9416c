"""Slow tier: the learner's first screen in a real JupyterLab (the one `make lab` opens), in headless
Chromium with every request outside localhost blocked: the notebook opens on its prose with the
Colab cell collapsed, there is no news pop-up and no nbgrader instructor panel; the instructor's
JupyterLab (`make instructor-lab`) has nbgrader's menu back.

Needs Debian's `chromium` (`make` installs it as root; elsewhere the test is skipped with the reason).
Screenshots land in $COURSE_ARTIFACTS (default: pytest's tmp folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CHAPTERS, CHROMIUM, CHROMIUM_ARGS, ROOT

pytestmark = pytest.mark.notebooks
NOTEBOOK = "00_transformerlens_warmup.ipynb"
TOKEN = "first-screen-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab(config: str, root: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "JUPYTER_CONFIG_PATH": str(ROOT / "jupyter" / config), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1", "--allow-root"]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    pytest.fail("JupyterLab did not start within 120 s")


def _open(config: str, tmp_path: Path, shot: str):
    """(page text of the notebook's first screen, whether nbgrader's menu is there, Colab cell state)."""
    if CHROMIUM is None:
        pytest.skip("needs Chromium (Debian package `chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(CHAPTERS / NOTEBOOK, root / NOTEBOOK)
    port = _free_port()
    server = _lab(config, root, port)
    outside: list[str] = []
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            def route(request_route):
                url = request_route.request.url
                if url.startswith(f"http://127.0.0.1:{port}/") or url.startswith("ws://127.0.0.1") or url.startswith("data:"):
                    return request_route.continue_()
                outside.append(url)
                return request_route.abort()

            page.route("**/*", route)
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_timeout(4000)  # notifications (the news question) appear a moment after start
            artifacts = Path(os.environ.get("COURSE_ARTIFACTS", tmp_path)) / "first-screen"
            artifacts.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(artifacts / f"{shot}.png"))
            menus = page.locator(".lm-MenuBar-itemLabel").all_inner_texts()
            first_cell = page.locator(".jp-Notebook .jp-Cell").nth(0).inner_text()
            colab = page.locator(".jp-Notebook .jp-CodeCell").nth(0)
            collapsed = colab.locator(".jp-InputPlaceholder").count() > 0 and colab.locator(".jp-InputArea-editor").count() == 0
            text = page.locator("body").inner_text()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return text, menus, first_cell, collapsed, outside


def test_the_learners_jupyterlab_opens_on_prose_without_news_or_instructor_panels(tmp_path):
    text, menus, first_cell, collapsed, outside = _open("learner", tmp_path, "learner")
    assert "00 — TransformerLens warm-up" in first_cell, "the notebook should open on its prose"
    assert collapsed, "the Colab cell's source should be hidden"
    assert "Nbgrader" not in menus and "Formgrader" not in text and "Create Assignment" not in text, menus
    assert "official Jupyter news" not in text
    assert outside == [], f"requests left the machine: {outside}"


def test_the_instructors_jupyterlab_has_nbgrader(tmp_path):
    text, menus, *_ = _open("instructor", tmp_path, "instructor")
    assert "Nbgrader" in menus, menus
    assert "official Jupyter news" not in text
