"""The page at ``/``: type a sentence, see its translation and where the model looked.

The heatmap is the static gallery's own card (:data:`pipeline.reporting.gallery.VIEWER_JS`):
the same colours (white = weight 1) and the same hover read-out.  Text from the model and
the user reaches the page through ``textContent`` only, and the server's description as
script-safe JSON, so nothing typed can become markup.  ``/?text=...&decode=beam`` translates
on load (a link to a translation; the browser test uses it).
"""

from __future__ import annotations

import html

from pipeline.reporting.gallery import VIEWER_JS, VIEWER_STYLE, script_safe_json

_PAGE_STYLE = """
form { margin: 1em 0; } textarea { width: 38em; height: 3.5em; font: inherit; }
#translation { font-size: 18px; margin: .6em 0; min-height: 1.5em; } #error { color: #b00; }
"""

_PAGE_JS = r"""
"use strict";
window.addEventListener("error", (e) => { document.body.dataset.viewerError = String(e.message); });
const ABOUT = JSON.parse(document.getElementById("about").textContent);
const gallery = document.getElementById("gallery");
const shown = document.getElementById("translation");
const error = document.getElementById("error");

async function ask(text, decode) {
  document.body.dataset.viewer = "busy";
  error.textContent = "";
  const response = await fetch("/translate", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text, decode }) });
  const data = await response.json();
  gallery.replaceChildren();
  if (!response.ok) {
    shown.textContent = "";
    error.textContent = data.error;
  } else {
    const t = data.translations[0];
    shown.textContent = t.translation;
    if (t.weights) {
      gallery.appendChild(buildCard({ id: 0, src: t.src_pieces, tgt: t.tgt_pieces, weights: t.weights, links: [] }));
    } else {
      error.textContent = "this model has no attention to show";
    }
  }
  document.body.dataset.cells = String(document.querySelectorAll("rect.cell").length);
  document.body.dataset.viewer = "ready";
}

document.getElementById("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  ask(document.getElementById("text").value, document.getElementById("decode").value);
});
const query = new URLSearchParams(location.search);
if (query.get("text")) {
  document.getElementById("text").value = query.get("text");
  document.getElementById("decode").value = query.get("decode") === "beam" ? "beam" : "greedy";
  ask(query.get("text"), document.getElementById("decode").value);
} else {
  document.body.dataset.viewer = "ready";
}
"""


def serve_page(about: dict) -> str:
    """The whole page, self-contained apart from its calls to ``/translate``."""
    data = about.get("data", {})
    title = f"{about['model'].get('name', 'model')}: {data.get('src_lang')} -> {data.get('tgt_lang')}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{VIEWER_STYLE}{_PAGE_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>step {html.escape(str(about["run"]["step"]))} of {html.escape(about["run"]["run_dir"])}. Source pieces along
the top, target pieces down the side; white = weight 1, black = 0 (Bahdanau et al. 2015, fig. 3).
Hover a cell for its weight.</p>
<form id="ask"><textarea id="text" placeholder="a sentence to translate"></textarea><br>
<select id="decode"><option value="greedy">greedy</option><option value="beam">beam</option></select>
<button type="submit">Translate</button></form>
<div id="translation"></div><div id="error"></div>
<main id="gallery"></main>
<script type="application/json" id="about">{script_safe_json(about)}</script>
<script>{VIEWER_JS}</script>
<script>{_PAGE_JS}</script>
</body>
</html>
"""
