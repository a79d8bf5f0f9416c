"""Pictures a learner can explore — offline, no kernel needed: attention patterns, SAE latent dashboards, sliders.

Each view is ONE notebook output holding two renderings of the same thing (a mimebundle):

- ``text/html``: a self-contained interactive page fragment — its data inlined as JSON, a few lines of
  plain JavaScript, no ``<script src>``, no CDN, no request of any kind. It runs in JupyterLab (trusted
  outputs), Colab (outputs in an iframe), Binder and a static nbconvert HTML export, with the network cut.
- ``image/png``: a static matplotlib drawing of the same data, for where JavaScript cannot run (GitHub's
  preview, nbconvert PDF). ``utils.figures`` keeps ``image/png`` outputs of demo cells, so the course's
  expected-figure mechanism covers every view.

Why not CircuitsVis (``circuitsvis==1.43.3``)? It works offline only through ``RenderedHTML.local_src``,
which inlines its whole 1.3 MB React bundle into every view (its ``_repr_html_`` probes http://google.com
to choose; that request would leave the machine). Two attention views per notebook would add 2.6 MB to
each executed notebook; the views here are 20-60 KB. SAE-Vis / SAE-Dashboard pin transformer-lens < 3,
datasets < 4 (and SAE-Dashboard transformers < 4.57): they cannot install beside the course's pins.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

_counter = itertools.count()
CSS = """
.cv-view{font-family:sans-serif;font-size:13px;line-height:1.5;max-width:1000px}
.cv-view button{margin:1px;padding:1px 6px;border:1px solid #999;background:#f4f4f4;cursor:pointer;font-size:12px}
.cv-view button.on{background:#ffd7a8;border-color:#c60}
.cv-view .tok{display:inline-block;font-family:monospace;white-space:pre;padding:0 1px;margin:1px 0;cursor:default;
  border-bottom:2px solid transparent;box-shadow:inset -1px 0 #e4e4e4}
.cv-view .tok.q{outline:2px solid #c00}
.cv-view .info{color:#333;margin:4px 0;font-family:monospace}
.cv-view .ctx{margin:2px 0;font-family:monospace}
.cv-view table{border-collapse:collapse;font-family:monospace;font-size:12px}
.cv-view td{padding:0 6px}
"""


@dataclass
class View:
    """One interactive figure: its HTML (for browsers) and a PNG of the same thing (for everything else)."""

    html: str
    png: bytes
    title: str

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"text/html": self.html, "image/png": base64.b64encode(self.png).decode(), "text/plain": self.title}

    def save(self, path) -> None:
        """A standalone page (what a browser test opens)."""
        from pathlib import Path

        Path(path).write_text(f"<!doctype html><meta charset=utf-8><title>{html.escape(self.title)}</title>\n{self.html}")


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes (``savefig`` into a buffer: `utils.figures` records its titles under this PNG's hash)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _page(kind: str, title: str, data: dict, body: str, script: str) -> str:
    """A view's HTML: a root div with a deterministic id, its data as JSON, and a script that finds its root by id."""
    payload = json.dumps(data, separators=(",", ":"))
    uid = f"cv-{kind}-{hashlib.sha1(payload.encode()).hexdigest()[:10]}-{next(_counter)}"
    safe = payload.replace("</", "<\\/")  # JSON inside <script> must not close it
    return (
        f"<style>{CSS}</style><div class='cv-view' id='{uid}' data-view='{kind}'>"
        f"<div><b>{html.escape(title)}</b></div>{body}</div>"
        f"<script>(function(){{const root=document.getElementById('{uid}');const data={safe};{script}}})();</script>"
    )


def _escape_token(token: str) -> str:
    return token.replace("\n", "↵").replace("\t", "→")


# ---------------------------------------------------------------- attention patterns

ATTENTION_JS = """
const toks=[...root.querySelectorAll('.tok')], buttons=[...root.querySelectorAll('button')], info=root.querySelector('.info');
let head=0, query=null;
function show(){
  buttons.forEach((b,i)=>b.classList.toggle('on',i===head));
  toks.forEach(t=>{t.style.background='';t.classList.remove('q');});
  if(query===null){info.textContent='head '+data.heads[head]+': hover a token to see where it attends';return;}
  const row=data.patterns[head][query];
  let best=0;
  row.forEach((w,k)=>{toks[k].style.background='rgba(230,90,0,'+Math.min(1,Math.sqrt(w)).toFixed(3)+')'; if(w>row[best])best=k;});
  toks[query].classList.add('q');
  info.textContent='head '+data.heads[head]+': from '+JSON.stringify(data.tokens[query])+' (position '+query+
    ') most attention to '+JSON.stringify(data.tokens[best])+' (position '+best+'): '+row[best].toFixed(2);
}
toks.forEach((t,i)=>t.addEventListener('mouseenter',()=>{query=i;show();}));
buttons.forEach((b,i)=>b.addEventListener('click',()=>{head=i;show();}));
show();
"""


def _attention_png(tokens: list[str], patterns: Tensor, heads: list[str], title: str) -> bytes:
    n = len(heads)
    cols = math.ceil(math.sqrt(n))
    rows = (n + cols - 1) // cols
    size = min(max(3.0, 0.12 * len(tokens)), 5.0)
    fig = Figure(figsize=(size * cols + 0.5, size * rows + 0.8))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, pattern, name in zip(axes.flat, patterns, heads):
        ax.imshow(pattern.numpy(), cmap="Oranges", vmin=0, vmax=1)
        ax.set_title(f"head {name}", fontsize=9)
        step = max(1, len(tokens) // 20)
        ax.set_xticks(range(0, len(tokens), step), [tokens[i] for i in range(0, len(tokens), step)], rotation=90, fontsize=6)
        ax.set_yticks(range(0, len(tokens), step), [tokens[i] for i in range(0, len(tokens), step)], fontsize=6)
        ax.set(xlabel="key (attended to)", ylabel="query")
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def attention_view(
    tokens: Sequence[str], patterns: Float[Tensor, "head query key"], heads: Sequence[str], title: str = "Attention patterns"
) -> View:
    """Hover a token (the query) to shade every earlier token by the attention it gets; click a head's button to switch.

    ``patterns[i]`` is head ``heads[i]``'s pattern over ``tokens`` (rows sum to 1), e.g.
    ``torch.stack([cache["pattern", layer][0, head] for layer, head in ...])``.
    """
    patterns = torch.as_tensor(patterns).detach().float().cpu()
    tokens = [_escape_token(t) for t in tokens]
    assert patterns.shape[1:] == (len(tokens), len(tokens)), f"patterns {tuple(patterns.shape)} for {len(tokens)} tokens"
    assert len(heads) == len(patterns), f"{len(heads)} head names for {len(patterns)} patterns"
    rounded = [[[round(w, 3) for w in row] for row in pattern] for pattern in patterns.tolist()]
    data = {"tokens": tokens, "heads": list(heads), "patterns": rounded}
    buttons = "".join(f"<button>{html.escape(name)}</button>" for name in heads)
    spans = "".join(f"<span class='tok'>{html.escape(t)}</span>" for t in tokens)
    body = f"<div class='heads'>{buttons}</div><div class='info'></div><div class='tokens'>{spans}</div>"
    return View(_page("attention", title, data, body, ATTENTION_JS), _attention_png(tokens, patterns, list(heads), title), title)


# ---------------------------------------------------------------- SAE latent dashboards


@dataclass
class LatentCard:
    """Everything one latent's dashboard shows (plain data: cheap to inline as JSON)."""

    latent: int
    frequency: float  # fraction of tokens where it fires
    contexts: list[dict] = field(default_factory=list)  # {"tokens": [str], "values": [float], "peak": int}
    histogram: dict = field(default_factory=dict)  # {"edges": [float], "counts": [int]} of its non-zero activations
    boosts: list[tuple[str, float]] = field(default_factory=list)  # top logit effects of W_dec[latent] @ W_U
    suppresses: list[tuple[str, float]] = field(default_factory=list)
    summary: str = ""
    name: str = ""  # how the dashboard names it; default "latent {latent}" (04a: "L12/f277", latents of several SAEs)

    @property
    def label(self) -> str:
        return self.name or f"latent {self.latent}"


def latent_cards(
    model, tokens: Int[Tensor, "seq pos"], acts: Float[Tensor, "seq pos n_latents"], W_dec: Float[Tensor, "d_sae d_model"],
    latents: Sequence[int], n_contexts: int = 8, window: int = 10, n_logits: int = 8, bins: int = 30,
    names: Sequence[str] | None = None,
) -> list[LatentCard]:
    """One `LatentCard` per latent from activations already computed over ``tokens``: ``acts[s, p, i]`` is latent
    ``latents[i]`` at token ``tokens[s, p]`` (0 at BOS and wherever a chapter masks tokens out) —
    `sae_latent_cards` computes them from an SAE. ``names`` label the cards (default "latent {i}")."""
    decode = model.tokenizer.decode
    effects = (W_dec[list(latents)].float() @ model.W_U.float()).detach()  # [latents, d_vocab]: direct logit effects
    cards = []
    for row, latent in enumerate(latents):
        values = acts[..., row].float()
        contexts = []
        for seq, pos, _ in _top_positions(values, n_contexts, apart=window):
            lo, hi = max(1, pos - window), min(values.shape[1], pos + 4)
            contexts.append({"tokens": [_escape_token(decode(t)) for t in tokens[seq, lo:hi]],
                             "values": [round(v, 3) for v in values[seq, lo:hi].tolist()], "peak": pos - lo})
        fired = values[values > 0]
        counts, edges = (torch.histogram(fired, bins=bins) if len(fired) else (torch.zeros(bins), torch.linspace(0, 1, bins + 1)))
        up, down = effects[row].topk(n_logits), (-effects[row]).topk(n_logits)
        card = LatentCard(
            latent=latent, frequency=(values[:, 1:] > 0).float().mean().item(), contexts=contexts,
            histogram={"edges": [round(e, 3) for e in edges.tolist()], "counts": [int(c) for c in counts.tolist()]},
            boosts=[(decode(t), round(v, 3)) for t, v in zip(up.indices.tolist(), up.values.tolist())],
            suppresses=[(decode(t), round(-v, 3)) for t, v in zip(down.indices.tolist(), down.values.tolist())],
            name=names[row] if names is not None else "",
        )
        card.summary = summary_line(card)
        cards.append(card)
    return cards


def sae_latent_cards(
    model, params: dict[str, Tensor], tokens: Int[Tensor, "seq pos"], hook_name: str, latents: Sequence[int],
    k: int | None = None, batch_size: int = 16, outlier_factor: float | None = 10.0, **card_options,
) -> list[LatentCard]:
    """Dashboards' data for ``latents`` of an SAE (the course's params, or `utils.sae.load_sae`'s from a SAELens
    folder) over ``tokens``: one pass of the model up to ``hook_name`` (`utils.data.collect_activations`),
    the SAE's encoder, then `latent_cards`. Chapters 02 and 04a use it (04b calls `latent_cards` on the values its
    probes saw).

    Positions whose residual norm is over ``outlier_factor`` times the median (SmolLM2's secondary attention
    sinks, about 1 in 6,000 tokens: chapter 02, section 12) count as 0, as they do when the SAEs are trained:
    one such token can make a latent's top context and squash its histogram (None keeps them)."""
    from utils.data import collect_activations
    from utils.sae.model import encode

    acts = collect_activations(model, tokens, hook_name, batch_size, desc="activations for the dashboards")
    norms = acts.float().norm(dim=-1)  # [seq, pos - 1]
    keep = norms < outlier_factor * norms.median() if outlier_factor is not None else torch.ones_like(norms, dtype=torch.bool)
    columns = []
    with torch.no_grad():
        for chunk, kept in zip(acts.split(16), keep.split(16)):  # 16 sequences: [2,032, d_sae] at a time (Binder's memory)
            f = encode(params, chunk.float().flatten(0, 1), k)[:, list(latents)].view(len(chunk), -1, len(latents))
            columns.append(f * kept[..., None])
    values = torch.cat([torch.zeros(len(tokens), 1, len(latents)), torch.cat(columns)], dim=1)  # BOS: 0
    return latent_cards(model, tokens, values, params["W_dec"], latents, **card_options)


def _top_positions(values: Float[Tensor, "seq pos"], n: int, apart: int) -> list[tuple[int, int, float]]:
    """The ``n`` largest positive activations as (seq, pos, value), at least ``apart`` tokens from each other in
    one sequence (neighbouring tokens of one peak would show the same context twice)."""
    top = values.flatten().topk(min(values.numel(), 20 * n))
    chosen: list[tuple[int, int, float]] = []
    for value, index in zip(top.values.tolist(), top.indices.tolist()):
        if value <= 0 or len(chosen) == n:
            break
        seq, pos = divmod(index, values.shape[1])
        if all(s != seq or abs(p - pos) >= apart for s, p, _ in chosen):
            chosen.append((seq, pos, value))
    return chosen


def summary_line(card: LatentCard) -> str:
    """A one-line auto summary: the tokens it fires on most often in its top contexts, and what it boosts."""
    peaks = [c["tokens"][c["peak"]] for c in card.contexts]
    common = [f"{t!r}×{n}" if n > 1 else repr(t) for t, n in _most_common(peaks, 3)]
    fires = ", ".join(common) or "nothing in this corpus"
    boosts = ", ".join(repr(t) for t, _ in card.boosts[:3])
    return f"{card.label} fires on {card.frequency:.2%} of tokens, most on {fires}; it boosts {boosts}"


def _most_common(items: list[str], n: int) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], items.index(kv[0])))[:n]


DASHBOARD_JS = """
const cards=[...root.querySelectorAll('.card')], buttons=[...root.querySelectorAll('button')], info=root.querySelector('.info');
function pick(i){cards.forEach((c,j)=>c.style.display=j===i?'':'none'); buttons.forEach((b,j)=>b.classList.toggle('on',j===i));
  info.textContent=data.summaries[i];}
buttons.forEach((b,i)=>b.addEventListener('click',()=>pick(i)));
const hover=root.querySelector('.hover');
root.querySelectorAll('.tok').forEach(t=>t.addEventListener('mouseenter',()=>{
  hover.textContent='activation '+t.dataset.v+' at '+JSON.stringify(t.textContent);}));
pick(0);
"""


def _histogram_svg(histogram: dict, width: int = 260, height: int = 90) -> str:
    counts = histogram["counts"]
    peak = max(max(counts), 1)
    bar = width / len(counts)
    rects = "".join(f"<rect x='{i * bar:.1f}' y='{height - c / peak * height:.1f}' width='{bar - 1:.1f}' "
                    f"height='{c / peak * height:.1f}' fill='#e0701a'/>" for i, c in enumerate(counts))
    edges = histogram["edges"]
    return (f"<svg width='{width}' height='{height + 14}' role='img'>{rects}"
            f"<text x='0' y='{height + 12}' font-size='10'>{edges[0]:.2f}</text>"
            f"<text x='{width}' y='{height + 12}' font-size='10' text-anchor='end'>{edges[-1]:.2f}</text></svg>")


def _card_html(card: LatentCard) -> str:
    rows = []
    for context in card.contexts:
        peak = max(max(context["values"]), 1e-9)
        spans = "".join(
            f"<span class='tok' data-v='{v:.2f}' style='background:rgba(230,90,0,{max(v, 0) / peak:.2f});"
            f"{'border-bottom-color:#000' if i == context['peak'] else ''}'>{html.escape(t)}</span>"
            for i, (t, v) in enumerate(zip(context["tokens"], context["values"])))
        rows.append(f"<div class='ctx'><b>{context['values'][context['peak']]:6.2f}</b>&nbsp;{spans}</div>")
    logits = "".join(
        f"<tr><td style='color:#06c'>{html.escape(repr(up))}</td><td>{uv:+.2f}</td>"
        f"<td style='color:#c00'>{html.escape(repr(down))}</td><td>{dv:+.2f}</td></tr>"
        for (up, uv), (down, dv) in zip(card.boosts, card.suppresses))
    key = html.escape(card.name or str(card.latent))  # unique: one index can name latents of two SAEs (04a)
    return (f"<div class='card' data-latent='{key}'><div><b>{html.escape(card.label)}</b> · fires on "
            f"{card.frequency:.2%} of tokens</div><div style='display:flex;gap:24px'>"
            f"<div><div>non-zero activations</div>{_histogram_svg(card.histogram)}</div>"
            f"<div><div>logit effects (W_dec · W_U)</div><table><tr><th>boosts</th><th></th><th>suppresses</th><th></th></tr>"
            f"{logits}</table></div></div><div>top-activating contexts (hover a token for its activation)</div>"
            f"{''.join(rows)}</div>")


def _context_line(context: dict, before: int = 45, after: int = 20) -> str:
    tokens, peak = context["tokens"], context["peak"]
    return f"{''.join(tokens[:peak])[-before:]}[{tokens[peak]}]{''.join(tokens[peak + 1:])[:after]}"


def _dashboard_png(cards: list[LatentCard], title: str, shown: int = 3) -> bytes:
    shown_cards = cards[:shown]
    fig = Figure(figsize=(12, 2.6 * len(shown_cards) + 0.6))
    axes = fig.subplots(len(shown_cards), 3, squeeze=False, gridspec_kw={"width_ratios": [1, 1, 2.2]})
    for (hist_ax, logit_ax, text_ax), card in zip(axes, shown_cards):
        edges, counts = card.histogram["edges"], card.histogram["counts"]
        hist_ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:])], align="edge", color="#e0701a")
        hist_ax.set_title(f"{card.label}: non-zero activations", fontsize=9)
        names = [repr(t) for t, _ in card.boosts[:5]] + [repr(t) for t, _ in card.suppresses[:5]]
        values = [v for _, v in card.boosts[:5]] + [v for _, v in card.suppresses[:5]]
        logit_ax.barh(range(len(values)), values, color=["tab:blue"] * 5 + ["tab:red"] * 5)
        logit_ax.set_yticks(range(len(values)), names, fontsize=7)
        logit_ax.invert_yaxis()
        logit_ax.set_title("logit effects", fontsize=9)
        text_ax.axis("off")
        text = "\n".join(f"{c['values'][c['peak']]:6.2f}  {_context_line(c)}" for c in card.contexts[:6])
        summary = textwrap.fill(card.summary, 95)
        text_ax.text(0, 1, f"{summary}\n\ntop contexts ([peak token]):\n{text}", va="top", family="monospace", fontsize=7)
    fig.suptitle(f"{title} (the first {len(shown_cards)} of {len(cards)})" if len(cards) > shown else title, fontsize=11)
    fig.tight_layout()
    return _png(fig)


def latent_dashboard(cards: Sequence[LatentCard], title: str = "SAE latent dashboards") -> View:
    """Click a latent's button to see its dashboard: histogram, logit effects, shaded top contexts, summary line.
    The PNG fallback shows the first three latents."""
    cards = list(cards)
    buttons = "".join(f"<button>{html.escape(card.name or str(card.latent))}</button>" for card in cards)
    body = (f"<div>{buttons}</div><div class='info'></div>{''.join(_card_html(c) for c in cards)}"
            "<div class='info hover'>hover a token of a context for its activation</div>")
    data = {"summaries": [c.summary for c in cards]}
    return View(_page("dashboard", title, data, body, DASHBOARD_JS), _dashboard_png(cards, title), title)


# ---------------------------------------------------------------- sliders over precomputed frames

SLIDER_JS = """
const slider=root.querySelector('input'), image=root.querySelector('img'), label=root.querySelector('.info');
function show(){const i=+slider.value; image.src='data:image/png;base64,'+data.frames[i]; label.textContent=data.labels[i];}
slider.addEventListener('input',show);
show();
"""


def slider_view(
    draw: Callable[[Axes, int], None], labels: Sequence[str], title: str, figsize: tuple[float, float] = (4.0, 3.5),
    name: str = "",
) -> View:
    """A slider over precomputed frames: ``draw(ax, i)`` draws frame ``i`` (labelled ``labels[i]``); the browser
    only switches images, so moving the slider is instant and needs no kernel. The PNG fallback shows every
    frame side by side. ``name`` (what the slider moves, e.g. "sparsity S") is the slider's accessible name:
    the page shows the current frame's label beside it, which should name the value ("S = 0.72: …")."""
    frames = []
    for i in range(len(labels)):
        fig = Figure(figsize=figsize)
        ax = fig.subplots()
        draw(ax, i)
        ax.set_title(labels[i], fontsize=10)
        frames.append(base64.b64encode(_png(fig)).decode())
    columns = min(len(labels), 4)
    rows = (len(labels) + columns - 1) // columns
    fig = Figure(figsize=(figsize[0] * 0.75 * columns, figsize[1] * 0.75 * rows + 0.5))
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(labels):
            draw(ax, i)
            ax.set_title(labels[i], fontsize=9)
        else:
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    # ``name`` is the slider's accessible name; what it shows is the frame's label (which names the value)
    body = (f"<div><input type='range' min='0' max='{len(labels) - 1}' value='0' step='1' style='width:300px' "
            f"aria-label='{html.escape(name or title)}'> <span class='info'></span></div><img alt='{html.escape(title)}'>")
    data = {"frames": frames, "labels": list(labels)}
    return View(_page("slider", title, data, body, SLIDER_JS), _png(fig), title)
