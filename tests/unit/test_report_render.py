"""The report's tables, example picking and HTML escaping, on hand-built comparisons."""

from __future__ import annotations

from pathlib import Path

from pipeline.report import pick_examples
from pipeline.report_render import render_html, render_markdown, result_rows

HOSTILE = "<img src=x onerror=alert(1)>"


def comparison() -> dict:
    bucket = {"min_len": 1, "max_len": 9, "n": 50, "bleu": 20.0, "bleu_ci95": 2.0}
    system = {"bleu": 30.0, "bleu_ci95": 1.5, "chrf": 55.0, "chrf_ci95": 1.0, "ter": 50.0, "ter_ci95": 1.2}
    return {
        "split": "test",
        "decode": "beam5-lp0.6",
        "systems": {
            "bahdanau": {**system, "params": 10, "train_minutes": 1.0, "best_step": 5},
            "baseline": {**system, "bleu": 20.0, "params": 8, "train_minutes": 1.0, "best_step": 4},
        },
        "significance": {
            "method": "paired bootstrap",
            "baseline": "baseline",
            "p_value": 0.001,
            "comparisons": {"bahdanau": {"bleu_p_value": 0.001, "chrf_p_value": 0.002}},
        },
        "by_length": {"bahdanau": [bucket], "baseline": [bucket]},
        "signatures": {"bleu": "nrefs:1|case:mixed"},
        "manifest": {f"runs/{HOSTILE}": {"seed": 1, "config": {"data": {"local_dir": HOSTILE}}}},
    }


def test_rows_carry_cis_and_p_values_against_the_baseline():
    rows = result_rows(comparison())
    assert rows[0][-1] == "p (BLEU) vs baseline"
    assert rows[1][:2] == ["bahdanau", "30.00 ± 1.50"] and rows[1][-1] == "0.0010"
    assert rows[2][-1] == "baseline"


def test_html_escapes_every_untrusted_text():
    examples = [{"id": 0, "src": HOSTILE, "ref": HOSTILE, "hyps": {"bahdanau": HOSTILE, "baseline": "</pre>"}}]
    figures = {"bleu_by_length.png": b"png", "training_curves.png": b"png"}
    page = render_html(comparison(), examples, None, Path("."), figures)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "</pre></dd>" not in page
    assert HOSTILE in render_markdown(comparison(), examples, None, Path("."))  # Markdown keeps the text as is


def test_examples_spread_over_lengths_and_include_the_longest():
    srcs = [" ".join(["w"] * n) for n in (5, 1, 9, 3, 7, 2, 8, 4, 6, 10)]
    picked = pick_examples(srcs, 5)
    assert len(picked) == 5 and 9 in picked  # index 9 holds the longest sentence
    assert min(len(srcs[i].split()) for i in picked) >= 3
