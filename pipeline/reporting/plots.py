"""Attention heatmaps in the style of Bahdanau et al. 2015, fig. 3.

Source tokens run along the top (x), target tokens down the side (y), and each
cell's shade is the weight α_ij on a grey scale from black (0) to white (1), as in
the paper.  Tick labels are rotated and drawn with a font list that falls back
across scripts (matplotlib >= 3.6 picks, per glyph, the first installed font that
has it), so German, French, Czech, Cyrillic, Greek or CJK tokens show as text
rather than boxes wherever such a font is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402

# Tried in order; missing ones are skipped.  DejaVu Sans ships with matplotlib.
FONT_CANDIDATES = ("DejaVu Sans", "Noto Sans", "Noto Sans CJK JP", "Noto Sans Arabic", "Noto Sans Devanagari")


def _font_family() -> list[str]:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return [name for name in FONT_CANDIDATES if name in installed] or ["sans-serif"]


def heatmap_figure(src: Sequence[str], tgt: Sequence[str], weights: np.ndarray, title: str):
    """A matplotlib figure of ``weights`` [len(tgt), len(src)]; the caller saves and closes it."""
    with plt.rc_context({"font.family": _font_family(), "svg.fonttype": "none", "pdf.fonttype": 42}):
        cell = 0.32
        fig, ax = plt.subplots(figsize=(max(4.0, cell * len(src) + 2.2), max(3.0, cell * len(tgt) + 1.8)))
        image = ax.imshow(weights, cmap="gray", vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
        ax.xaxis.tick_top()
        ax.set_xticks(range(len(src)), list(src), rotation=90, fontsize=9)
        ax.set_yticks(range(len(tgt)), list(tgt), fontsize=9)
        ax.tick_params(length=0)
        ax.set_title(title, fontsize=9, pad=10, loc="left")
        fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02, label="attention weight α")
        fig.tight_layout()
    return fig


def save_heatmap(
    src: Sequence[str], tgt: Sequence[str], weights: np.ndarray, title: str, stem: Path, formats: Sequence[str]
) -> list[Path]:
    """Write one file per format (``stem.png``, ``stem.svg``, ``stem.pdf``); returns their paths."""
    fig = heatmap_figure(src, tgt, weights, title)
    paths = []
    try:
        for fmt in formats:
            path = stem.with_suffix(f".{fmt}")
            fig.savefig(path, format=fmt, dpi=150, bbox_inches="tight")
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def bleu_by_length_figure(systems: dict[str, list[dict]]):
    """BLEU per source-length bucket, one line per system with its 95% CI band (cf. Bahdanau et al. 2015, fig. 2)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, buckets in systems.items():
        x = np.arange(len(buckets))
        bleu = np.array([b["bleu"] for b in buckets])
        ci = np.array([b.get("bleu_ci95") or 0.0 for b in buckets])
        ax.plot(x, bleu, marker="o", label=name)
        ax.fill_between(x, bleu - ci, bleu + ci, alpha=0.2)
    first = next(iter(systems.values()), [])
    ax.set_xticks(range(len(first)), [f"{b['min_len']}–{b['max_len']}\n(n={b['n']})" for b in first], fontsize=8)
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel("BLEU")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def training_curves_figure(curves: dict[str, list[dict]]):
    """Validation BLEU against steps and against wall-clock minutes, one line per system."""
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for name, points in curves.items():
        by_step.plot([p["step"] for p in points], [p["bleu"] for p in points], marker=".", label=name)
        by_time.plot([p["elapsed_min"] for p in points], [p["bleu"] for p in points], marker=".", label=name)
    by_step.set_xlabel("training step")
    by_time.set_xlabel("wall-clock training minutes")
    by_step.set_ylabel("validation BLEU (greedy)")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> bytes:
    """Save ``fig`` as PNG at ``path``, close it, and return the PNG bytes (for inlining)."""
    try:
        fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path.read_bytes()
