"""The interactive views of `utils.visuals`: self-contained (no request can leave the machine), a PNG beside
every HTML, and — slow tier, in headless Chromium with every outside request blocked — each view renders and
responds: hovering a token, clicking a head or a latent, moving a slider changes what is shown.

The views are built from small synthetic data (no model needed) and written to files; the browser opens them
as file:// pages. Each response check is also run on a view with its handler removed, and must fail there.
Screenshots land in $COURSE_ARTIFACTS/visuals (default: pytest's tmp folder); the path is printed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, offline_page
from utils import graph_view, visuals

WORDS = "When Mary and John went to the store , John gave a drink to Mary".split()


def attention() -> visuals.View:
    n = len(WORDS)
    previous = torch.eye(n).roll(-1, dims=1).tril() + torch.eye(n) * 0.05  # each token attends to the one before
    previous[0, 0] = 1.0
    uniform = torch.ones(n, n).tril()
    patterns = torch.stack([previous, uniform])
    return visuals.attention_view(WORDS, patterns / patterns.sum(-1, keepdim=True), ["1.0 previous-token", "2.3 uniform"])


class _Tokenizer:
    def decode(self, token) -> str:
        return f" w{int(token)}"


def dashboard() -> visuals.View:
    g = torch.Generator().manual_seed(0)
    model = SimpleNamespace(tokenizer=_Tokenizer(), W_U=torch.randn(8, 50, generator=g))
    tokens = torch.randint(50, (6, 24), generator=g)
    acts = torch.relu(torch.randn(6, 24, 3, generator=g) - 1.0)  # latents 0, 3, 4
    acts[:, 0] = 0
    cards = visuals.latent_cards(model, tokens, acts, torch.randn(5, 8, generator=g), [0, 3, 4])
    return visuals.latent_dashboard(cards, "Synthetic latents")


def slider() -> visuals.View:
    def draw(ax, i):
        ax.plot([0, 1], [0, i])
        ax.set(xlim=(0, 1), ylim=(0, 4))

    return visuals.slider_view(draw, [f"slope {i}" for i in range(5)], "A line as its slope moves", name="slope")


def graph() -> visuals.View:
    """Chapter 05's attribution-graph explorer on a hand-made graph: two inputs, two features, a logit."""
    import matplotlib.pyplot as plt

    nodes = [{"x": 0, "y": 0, "kind": "input", "text": "in 0 'Mary'"}, {"x": 1, "y": 0, "kind": "input", "text": "in 1 'to'"},
             {"x": 0, "y": 1, "kind": "feature", "text": "L15/f7@0 · names"},
             {"x": 1, "y": 2, "kind": "feature", "text": "L16/f3@1"},
             {"x": 1, "y": 3, "kind": "logit", "text": "logit ' Mary'"}]
    edges = [[0, 2, 0.8], [2, 3, 0.5], [1, 3, -0.2], [3, 4, 1.0]]
    return graph_view.graph_view(nodes, edges, ["Mary", " to"], ["input", "L15", "L16", "logits"], "A tiny graph",
                      lambda: plt.subplots()[1].plot([0, 1], [0, 1]))


VIEWS = {"attention": attention, "dashboard": dashboard, "slider": slider, "graph": graph}


# ---------------------------------------------------------------- fast: self-contained, with a static fallback


@pytest.mark.parametrize("kind", VIEWS)
def test_a_view_is_self_contained_and_has_a_png_fallback(kind):
    view = VIEWS[kind]()
    bundle = view._repr_mimebundle_()
    assert set(bundle) >= {"text/html", "image/png"}, "one output holding the HTML and its static PNG"
    import base64

    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n", "the fallback is a PNG"
    page = bundle["text/html"]
    remote = re.findall(r"""(?:src|href)\s*=\s*['"]?\s*(?:https?:)?//|@import|url\(\s*['"]?(?:https?:)?//|https?://""", page)
    assert not remote, f"{kind}: the HTML refers to something outside the machine: {remote[:3]}"
    assert "<script src" not in page.replace(" ", "")


def test_cards_of_several_saes_are_named_and_told_apart():
    g = torch.Generator().manual_seed(0)
    model = SimpleNamespace(tokenizer=_Tokenizer(), W_U=torch.randn(8, 50, generator=g))
    tokens = torch.randint(50, (6, 24), generator=g)
    acts = torch.relu(torch.randn(6, 24, 2, generator=g))
    acts[:, 0] = 0
    cards = visuals.latent_cards(model, tokens, acts, torch.randn(700, 8, generator=g), [657, 657], names=["L4/f657", "L8/f657"])
    assert [c.label for c in cards] == ["L4/f657", "L8/f657"] and cards[1].summary.startswith("L8/f657 fires on")
    page = visuals.latent_dashboard(cards).html
    assert "<button>L4/f657</button><button>L8/f657</button>" in page
    assert "data-latent='L4/f657'" in page and "data-latent='L8/f657'" in page, "one index in two SAEs: two cards apart"
    assert visuals.latent_cards(model, tokens, acts, torch.randn(700, 8, generator=g), [1, 2])[0].label == "latent 1"


@pytest.mark.parametrize("outlier_factor", [10.0, None])
def test_sae_cards_leave_out_attention_sink_outliers_as_training_does(monkeypatch, outlier_factor):
    import utils.data

    g = torch.Generator().manual_seed(0)
    model = SimpleNamespace(tokenizer=_Tokenizer(), W_U=torch.randn(4, 50, generator=g))
    tokens = torch.randint(50, (3, 9), generator=g)
    acts = torch.rand(3, 8, 4, generator=g) + 0.5  # what collect_activations returns: every position but BOS
    acts[1, 5] *= 100  # a secondary attention sink: a norm 100 times the others
    monkeypatch.setattr(utils.data, "collect_activations", lambda *args, **kwargs: acts.half())
    params = {"W_enc": torch.eye(4)[:, :2], "b_enc": torch.zeros(2), "W_dec": torch.eye(2, 4), "b_dec": torch.zeros(4)}
    card = visuals.sae_latent_cards(model, params, tokens, "blocks.1.hook_resid_pre", [0], outlier_factor=outlier_factor)[0]
    peak = max(card.histogram["edges"])
    if outlier_factor is None:
        assert peak > 40, "kept: the sink is the top activation"
    else:
        assert peak < 2, f"the sink's activation ({acts[1, 5, 0]:.0f}) is in the dashboard"
        assert all(max(c["values"]) < 2 for c in card.contexts)


def test_a_slider_names_what_it_moves_once():
    page = slider().html
    assert "aria-label='slope'" in page, "the slider's accessible name"
    assert "slope <span class='info'>" not in page, "shown beside the frame's label, which names it again: 'slope slope 4'"


def test_the_course_keeps_a_view_png_as_its_expected_figure():
    import nbformat

    from utils import figures

    view = attention()
    cell = nbformat.v4.new_code_cell("view", id="abc")
    bundle = view._repr_mimebundle_()
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    assert figures.drawn(nbformat.v4.new_notebook(cells=[cell])) == {"abc": [view.png]}


def test_a_views_png_finds_its_titles_for_the_expected_figures_alt_text(tmp_path, monkeypatch):
    import hashlib
    import json

    from matplotlib.backend_bases import FigureCanvasBase

    from utils import figures

    monkeypatch.setattr(FigureCanvasBase, "print_figure", FigureCanvasBase.print_figure)  # restored after the test
    titles_file = tmp_path / "titles.jsonl"
    exec(figures.TITLE_HOOK.format(path=str(titles_file)), {})  # what `make figures` runs first in the kernel
    view = slider()
    records = {r["png"]: r["titles"] for r in map(json.loads, titles_file.read_text().splitlines())}
    titles = records.get(hashlib.sha1(view.png).hexdigest())
    assert titles is not None, "the PNG in the bundle is not the one matplotlib wrote: its titles would be lost"
    assert "A line as its slope moves" in titles and "slope 4" in titles


# ---------------------------------------------------------------- slow: in Chromium, offline


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    folder = Path(os.environ.get("COURSE_ARTIFACTS", tmp_path_factory.mktemp("artifacts"))) / "visuals"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the views: {folder}")
    return folder


def open_offline(browser, view: visuals.View, folder: Path, name: str):
    """The view as a file:// page with every other request aborted; returns (page, outside requests, JS errors)."""
    path = folder / f"{name}.html"
    view.save(path)
    return offline_page(browser, path, 1000, 700)


def backgrounds(page) -> list[str]:
    return page.eval_on_selector_all(".tok", "ts => ts.map(t => t.style.background)")


def check_attention(page, shots: Path) -> None:
    before = backgrounds(page)
    page.screenshot(path=str(shots / "attention-0-before.png"))
    page.hover(".tok >> nth=7")  # "store": the previous-token head looks at "the"
    hovered = backgrounds(page)
    info = page.inner_text(".info")
    page.screenshot(path=str(shots / "attention-1-hover.png"))
    assert hovered != before, "hovering a token shaded nothing"
    assert '"the"' in info and "position 6" in info, f"the previous-token head should look at 'the': {info!r}"
    page.click("button >> nth=1")
    assert backgrounds(page) != hovered, "clicking another head changed nothing"
    page.screenshot(path=str(shots / "attention-2-other-head.png"))


def check_dashboard(page, shots: Path) -> None:
    def visible() -> list[str]:
        return page.eval_on_selector_all(".card", "cs => cs.filter(c => c.style.display !== 'none').map(c => c.dataset.latent)")

    assert visible() == ["0"], f"one card shown at first, latent 0's: {visible()}"
    summary = page.inner_text(".info >> nth=0")
    assert summary.startswith("latent 0 fires on"), summary
    page.screenshot(path=str(shots / "dashboard-0-first.png"), full_page=True)
    page.click("button >> nth=2")
    assert visible() == ["4"], f"clicking latent 4 shows {visible()}"
    page.hover(".card[data-latent='4'] .tok >> nth=3")
    assert page.inner_text(".hover").startswith("activation "), "hovering a context token shows its activation"
    assert page.inner_text(".info >> nth=0").startswith("latent 4 fires on"), "the summary line is latent 4's"
    page.screenshot(path=str(shots / "dashboard-1-latent-4.png"), full_page=True)


def check_slider(page, shots: Path) -> None:
    first = page.get_attribute("img", "src")
    image = page.query_selector("img")
    assert first and first.startswith("data:image/png") and image.evaluate("i => i.naturalWidth") > 0, "frame 0 is drawn"
    before = image.screenshot(path=str(shots / "slider-0.png"))
    page.fill("input[type=range]", "4")  # sets the value and fires `input`, as dragging does
    assert page.inner_text(".info") == "slope 4"
    assert page.get_attribute("img", "src") != first, "moving the slider changed no frame"
    after = image.screenshot(path=str(shots / "slider-4.png"))
    assert after != before, "the picture looks the same after moving the slider"


def check_graph(page, shots: Path) -> None:
    def lit() -> list[str]:
        return page.eval_on_selector_all("line.on", "ls => ls.map(l => l.dataset.s + '-' + l.dataset.t)")

    assert lit() == [], "no edge is lit before hovering"
    page.hover("circle[data-i='3']")  # L16/f3@1: one edge in (from f7), one from the input, one out to the logit
    info = page.inner_text(".info")
    assert info.startswith("L16/f3@1") and "3 connected nodes" in info, info
    assert sorted(lit()) == ["1-3", "2-3", "3-4"], lit()
    dimmed = page.eval_on_selector_all(".dim", "ns => ns.map(n => n.dataset.i)")
    assert dimmed == ["0"], f"only the unconnected input is dimmed: {dimmed}"
    page.screenshot(path=str(shots / "graph-1-hover.png"))


CHECKS = {"attention": check_attention, "dashboard": check_dashboard, "slider": check_slider, "graph": check_graph}
BROKEN = {  # each view with the handler its check relies on removed
    "attention": ("ATTENTION_JS", "t.addEventListener('mouseenter'", "t.addEventListener('mouseleave'"),
    "dashboard": ("DASHBOARD_JS", "b.addEventListener('click'", "b.addEventListener('dblclick'"),
    "slider": ("SLIDER_JS", "slider.addEventListener('input'", "slider.addEventListener('change-never'"),
    "graph": ("GRAPH_JS", "n.addEventListener('mouseenter'", "n.addEventListener('mouseleave'"),
}


@pytest.mark.notebooks
@pytest.mark.parametrize("kind", VIEWS)
def test_each_view_renders_and_responds_offline(kind, browser, artifacts):
    page, outside, errors = open_offline(browser, VIEWS[kind](), artifacts, kind)
    CHECKS[kind](page, artifacts)
    page.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not outside, f"requests that would have left the machine: {outside}"


@pytest.mark.notebooks
@pytest.mark.parametrize("kind", VIEWS)
def test_the_check_fails_on_a_view_whose_handler_is_removed(kind, browser, artifacts, monkeypatch):
    name, handler, dead = BROKEN[kind]
    module = graph_view if name == "GRAPH_JS" else visuals  # the graph view lives in its own module (chapter 05's)
    assert handler in getattr(module, name)
    monkeypatch.setattr(module, name, getattr(module, name).replace(handler, dead))
    broken = artifacts / "broken"
    broken.mkdir(exist_ok=True)
    page, _, _ = open_offline(browser, VIEWS[kind](), broken, kind)
    with pytest.raises(AssertionError):
        CHECKS[kind](page, broken)
    page.close()


# ---------------------------------------------------------------- slow: the views inside executed reference notebooks
# `tests/test_notebooks.py` calls `assert_views_work_offline` on each reference notebook it has just run
# end to end (each notebook runs once in the suite).


def respond(view, kind: str) -> str:
    """Exercise one view of a notebook page (a locator of its root); returns what changed, or fails saying what did not."""
    if kind == "attention":
        tokens = view.locator(".tok")
        before = tokens.evaluate_all("ts => ts.map(t => t.style.background)")
        tokens.nth(tokens.count() - 1).hover()
        after = tokens.evaluate_all("ts => ts.map(t => t.style.background)")
        assert after != before, "hovering the last token shaded nothing"
        view.locator("button").last.click()
        assert tokens.evaluate_all("ts => ts.map(t => t.style.background)") != after, "clicking another head changed nothing"
        return view.locator(".info").inner_text()
    if kind == "graph":
        lit = "ls => ls.filter(l => l.classList.contains('on')).length"
        assert view.locator("line").evaluate_all(lit) == 0, "edges lit before hovering"
        view.locator("rect.node").last.hover()  # a logit node (the last drawn): its incoming edges light up
        assert view.locator("line").evaluate_all(lit) > 0, "hovering a logit node lit none of its edges"
        return view.locator(".info").inner_text()
    if kind == "dashboard":
        shown = "cs => cs.filter(c => c.style.display !== 'none').map(c => c.dataset.latent)"
        first = view.locator(".card").evaluate_all(shown)
        view.locator("button").nth(1).click()
        second = view.locator(".card").evaluate_all(shown)
        assert len(first) == len(second) == 1 and first != second, f"clicking the second latent: {first} -> {second}"
        return view.locator(".info").first.inner_text()
    slider = view.locator("input[type=range]")
    first = view.locator("img").get_attribute("src")
    slider.fill(slider.get_attribute("max"))
    assert view.locator("img").get_attribute("src") != first, "moving the slider to its end changed no frame"
    return view.locator(".info").inner_text()


def assert_views_work_offline(nb, name: str, artifacts: Path) -> int:
    """Every interactive view of an executed notebook, in its nbconvert HTML export opened in headless Chromium
    with every request but file: and data: aborted, renders and responds; returns how many there were (0 if the
    notebook has none; then no browser starts). Screenshots and the page land in ``artifacts``."""
    if not any("cv-view" in str(o.get("data", {}).get("text/html", "")) for c in nb.cells for o in c.get("outputs", [])):
        return 0
    if CHROMIUM is None:
        pytest.skip("needs Chromium (Debian package `chromium`) to check the notebook's interactive views")
    from nbconvert import HTMLExporter
    from playwright.sync_api import sync_playwright

    # nbconvert's own CDN scripts (RequireJS, MathJax, the widget manager for tqdm's bars), not the views': off
    exporter = HTMLExporter(require_js_url="data:,", mathjax_url="data:,", widget_renderer_url="data:,")
    artifacts.mkdir(parents=True, exist_ok=True)
    page_file = artifacts / f"{Path(name).stem}.html"
    page_file.write_text(exporter.from_notebook_node(nb)[0])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page, outside, errors = offline_page(browser, page_file)
        views = page.locator(".cv-view")
        count = views.count()
        assert count > 0, f"{name}: the views are in the outputs but not on the exported page"
        for n in range(count):
            view = views.nth(n)
            kind = view.get_attribute("data-view")
            view.scroll_into_view_if_needed()
            shown = respond(view, kind)
            view.screenshot(path=str(artifacts / f"{Path(name).stem}-{n + 1}-{kind}.png"))
            print(f"{name} view {n + 1} ({kind}): {shown}")
        browser.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not outside, f"requests that would have left the machine: {outside}"
    print(f"{name}: {count} interactive views work offline; screenshots in {artifacts}")
    return count
