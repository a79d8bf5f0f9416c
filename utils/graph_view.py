"""The interactive view of an attribution graph (chapter 05): one `utils.visuals.View`, offline, with a PNG fallback.

A separate module from `utils.visuals` (same page skeleton, `_page` and `_png`), so that the chapters that do not
draw graphs do not import it. Neither circuit-tracer's own viewer (a local web server over its JSON files, written
for its Graph objects) nor Neuronpedia's (online) can run inside a notebook output offline; the JSON this course
exports (`utils.attribution_graph.to_circuit_tracer_json`) opens in both.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

from utils.visuals import View, _page, _png

GRAPH_JS = """
const info=root.querySelector('.info'), nodes=[...root.querySelectorAll('circle,rect.node')],
  lines=[...root.querySelectorAll('line')];
function show(i){
  const near=new Set([i]);
  lines.forEach(l=>{const on=(+l.dataset.s===i||+l.dataset.t===i); l.classList.toggle('on',on); l.classList.toggle('off',!on);
    if(on){near.add(+l.dataset.s);near.add(+l.dataset.t);}});
  nodes.forEach(n=>n.classList.toggle('dim',!near.has(+n.dataset.i)));
  info.textContent=data.nodes[i].text+' — '+(near.size-1)+' connected nodes in the pruned graph';
}
nodes.forEach(n=>n.addEventListener('mouseenter',()=>show(+n.dataset.i)));
"""
GRAPH_CSS = (
    "<style>.cv-view line{stroke-opacity:.35}.cv-view line.on{stroke-opacity:.95}.cv-view line.off{stroke-opacity:.05}"
    ".cv-view .dim{opacity:.25}.cv-view circle,.cv-view rect.node{cursor:pointer;stroke:#000;stroke-width:.5}</style>"
)
GRAPH_COLOURS = {"feature": "#f28e2b", "error": "#9e9e9e", "input": "#59a14f", "logit": "#b07aa1"}


def graph_view(
    nodes: Sequence[dict],
    edges: Sequence[Sequence[float]],
    columns: Sequence[str],
    rows: Sequence[str],
    title: str,
    draw: Callable[[], None],
) -> View:
    """An attribution graph to explore: ``nodes`` are dicts {"x" (column), "y" (row), "kind" (feature, error, input,
    logit), "text" (what hovering shows)}, ``edges`` are [source, target, weight] over the nodes' indices (blue
    positive, red negative, width ∝ |weight|). Hovering a node shows its text and lights up its edges and neighbours.
    ``draw()`` draws the same graph with matplotlib (pyplot) for the PNG fallback."""
    import matplotlib.pyplot as plt

    width, height, left, top = 960, 60 + 30 * len(rows), 70, 20
    span = max([len(columns) - 0.5, *[node["x"] + 0.5 for node in nodes]])  # logits may sit right of the last column
    step_x = (width - left - 20) / max(1.0, span + 0.5)
    px = lambda x: left + step_x * (x + 0.5)  # noqa: E731
    py = lambda y: top + (len(rows) - 1 - y) * 30  # noqa: E731
    peak = max([abs(w) for _, _, w in edges], default=1.0) or 1.0
    parts = []
    for s, t, w in edges:
        a, b = nodes[int(s)], nodes[int(t)]
        colour = "#4e79a7" if w > 0 else "#e15759"
        parts.append(
            f"<line data-s='{int(s)}' data-t='{int(t)}' x1='{px(a['x']):.1f}' y1='{py(a['y']):.1f}' x2='{px(b['x']):.1f}' "
            f"y2='{py(b['y']):.1f}' stroke='{colour}' stroke-width='{0.4 + 3 * abs(w) / peak:.2f}'/>"
        )
    for i, node in enumerate(nodes):
        x, y, colour = px(node["x"]), py(node["y"]), GRAPH_COLOURS[node["kind"]]
        tip = f"<title>{html.escape(node['text'])}</title>"
        if node["kind"] == "feature":
            parts.append(f"<circle data-i='{i}' cx='{x:.1f}' cy='{y:.1f}' r='5' fill='{colour}'>{tip}</circle>")
        else:
            parts.append(
                f"<rect class='node' data-i='{i}' x='{x - 4:.1f}' y='{y - 4:.1f}' width='8' height='8' "
                f"fill='{colour}'>{tip}</rect>"
            )
    labels = [f"<text x='4' y='{py(r) + 4:.1f}' font-size='10'>{html.escape(name)}</text>" for r, name in enumerate(rows)]
    labels += [
        f"<text x='{px(c):.1f}' y='{height - 8}' font-size='10' text-anchor='end' transform='rotate(-35 {px(c):.1f} "
        f"{height - 8})'>{html.escape(word)}</text>"
        for c, word in enumerate(columns)
    ]
    svg = (f"<svg width='{width}' height='{height + 40}' role='img' aria-label='{html.escape(title)}'>"
           f"{''.join(parts + labels)}</svg>")
    body = f"{GRAPH_CSS}<div class='info'>hover a node: what it is, its influence on the logits, its edges</div>{svg}"
    data = {"nodes": [{"text": node["text"]} for node in nodes]}
    draw()
    fig = plt.gcf()
    png = _png(fig)
    plt.close(fig)
    return View(_page("graph", title, data, body, GRAPH_JS), png, title)
