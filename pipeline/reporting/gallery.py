"""``index.html``: a self-contained, interactive attention viewer (no server, no network).

Safety: source text is untrusted input.  Tokens never pass through HTML parsing:
they travel as JSON inside ``<script type="application/json">`` with ``<``, ``>``
and ``&`` escaped as ``\\u003c``/``\\u003e``/``\\u0026`` (so no token can close the
script element), and the viewer puts them on the page with ``textContent`` only.
Text in the static part of the page goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import json

_STYLE = """
body { font: 14px/1.4 system-ui, "DejaVu Sans", sans-serif; margin: 1.5em; color: #222; }
header { margin-bottom: 1em; }
.card { display: inline-block; vertical-align: top; margin: 0 1.5em 1.5em 0; padding: .6em;
        border: 1px solid #ddd; border-radius: 6px; }
.card h2 { font-size: 14px; margin: 0 0 .3em; }
.status { font-family: monospace; min-height: 1.4em; color: #555; }
svg text { font-size: 11px; fill: #333; cursor: default; }
svg text.hl { fill: #c00; font-weight: bold; }
rect.cell { stroke: none; }
rect.cell:hover { stroke: #c00; stroke-width: 1.5; }
rect.link { fill: none; stroke: #e33; stroke-width: 1.5; pointer-events: none; }
body:not(.show-links) rect.link { display: none; }
"""

# The heatmap card, shared with the live page of ``pipeline.serve`` (pipeline/serving/page.py), so
# that both draw attention the same way: buildCard({id, src, tgt, weights, links}) -> <section>.
VIEWER_STYLE = _STYLE
VIEWER_JS = r"""
"use strict";
const NS = "http://www.w3.org/2000/svg";
const CELL = 16;

function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  parent.appendChild(node);
  return node;
}

function label(parent, text, attrs) {
  const node = el("text", attrs, parent);
  node.textContent = text;  // text, never markup
  return node;
}

function buildCard(item) {
  const card = document.createElement("section");
  card.className = "card";
  card.id = "sentence-" + item.id;
  const title = document.createElement("h2");
  title.textContent = "sentence " + item.id;
  card.appendChild(title);
  const status = document.createElement("div");
  status.className = "status";
  status.textContent = "hover a cell or a token";
  const nS = item.src.length, nT = item.tgt.length;
  const left = 8 + 7 * Math.max(...item.tgt.map((t) => t.length), 1);
  const top = 8 + 7 * Math.max(...item.src.map((t) => t.length), 1);
  const svg = el("svg", { width: left + CELL * nS + 4, height: top + CELL * nT + 4 }, card);
  const srcLabels = item.src.map((tok, j) =>
    label(svg, tok, { x: 0, y: 0, transform: `translate(${left + CELL * j + CELL * 0.7},${top - 4}) rotate(-90)` }));
  const tgtLabels = item.tgt.map((tok, i) =>
    label(svg, tok, { x: left - 4, y: top + CELL * i + CELL * 0.75, "text-anchor": "end" }));
  const linksOf = { src: Array.from({ length: nS }, () => []), tgt: Array.from({ length: nT }, () => []) };
  for (const [j, i] of item.links) { linksOf.src[j].push(i); linksOf.tgt[i].push(j); }
  const clear = () => { for (const n of srcLabels.concat(tgtLabels)) n.classList.remove("hl"); };
  item.weights.forEach((row, i) => row.forEach((w, j) => {
    const v = Math.round(255 * w);
    const cell = el("rect", { class: "cell", x: left + CELL * j, y: top + CELL * i, width: CELL, height: CELL,
                              fill: `rgb(${v},${v},${v})` }, svg);
    cell.addEventListener("mouseenter", () => {
      clear(); srcLabels[j].classList.add("hl"); tgtLabels[i].classList.add("hl");
      status.textContent = `α(${item.tgt[i]} ← ${item.src[j]}) = ${w.toFixed(3)}`;
    });
  }));
  for (const [j, i] of item.links) {
    el("rect", { class: "link", x: left + CELL * j + 2, y: top + CELL * i + 2,
                 width: CELL - 4, height: CELL - 4 }, svg);
  }
  const hover = (labels, side, other, otherLabels) => labels.forEach((node, k) => {
    node.addEventListener("mouseenter", () => {
      clear(); node.classList.add("hl");
      const hits = linksOf[side][k] || [];
      for (const h of hits) otherLabels[h].classList.add("hl");
      const weights = hits.map((h) => (side === "tgt" ? item.weights[k][h] : item.weights[h][k]).toFixed(3));
      status.textContent = `${item[side][k]} ↔ ${hits.map((h) => item[other][h]).join(" ") || "(no link)"}` +
        (weights.length ? `  α = ${weights.join(", ")}` : "");
    });
  });
  hover(srcLabels, "src", "tgt", tgtLabels);
  hover(tgtLabels, "tgt", "src", srcLabels);
  svg.addEventListener("mouseleave", clear);
  card.appendChild(status);
  return card;
}
"""

_SCRIPT = r"""
"use strict";
window.addEventListener("error", (e) => { document.body.dataset.viewerError = String(e.message); });
const DATA = JSON.parse(document.getElementById("alignment-data").textContent);
const gallery = document.getElementById("gallery");
for (const item of DATA.items) gallery.appendChild(buildCard(item));
document.getElementById("toggle-links").addEventListener("change", (e) => {
  document.body.classList.toggle("show-links", e.target.checked);
});
document.body.dataset.viewer = "ready";
document.body.dataset.sentences = String(DATA.items.length);
"""


def script_safe_json(obj: object) -> str:
    """JSON that cannot end a ``<script>`` element or open markup, whatever strings it holds."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def gallery_html(items: list[dict], title: str, subtitle: str) -> str:
    """The whole page.  ``items``: ``{id, src: [tok], tgt: [tok], weights: [[w]], links: [[s, t]]}``."""
    rounded = [{**it, "weights": [[round(float(w), 4) for w in row] for row in it["weights"]]} for it in items]
    payload = {"items": rounded}
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<p>{html.escape(subtitle)}</p>
<p>Source tokens along the top, target tokens down the side; white = weight 1, black = 0
(as in Bahdanau et al. 2015, fig. 3). Hover a cell for its weight, a token for its hard alignment.
<label><input type="checkbox" id="toggle-links"> overlay hard alignment (argmax per target word)</label></p>
</header>
<main id="gallery"></main>
<script type="application/json" id="alignment-data">{script_safe_json(payload)}</script>
<script>{VIEWER_JS}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""
