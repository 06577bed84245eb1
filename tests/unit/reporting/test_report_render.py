"""The report's tables, example picking and HTML escaping, on hand-built comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from pipeline.reporting.render import alignment_rows, render_html, render_markdown, result_rows
from pipeline.reporting.report import alignment_scores, pick_examples

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
    assert rows[2][-1] == "(itself)"


def test_variants_get_a_column_against_additive_and_an_aer_table():
    comp = comparison()
    comp["systems"]["dot"] = {**comp["systems"]["bahdanau"], "bleu": 31.0}
    comp["significance_vs_additive"] = {
        "method": "paired bootstrap",
        "baseline": "bahdanau",
        "comparisons": {"dot": {"bleu_p_value": 0.2, "chrf_p_value": 0.3}},
    }
    score = {"aer": 0.8, "precision": 0.25, "recall": 0.125, "sentences": 100}
    comp["alignment"] = {
        "systems": {"bahdanau": {"europarl-de-en": score}, "dot": {"europarl-de-en": {**score, "aer": 0.75}}},
        "diagonal": {"europarl-de-en": 0.671},
        "eflomal": {"europarl-de-en": {**score, "aer": 0.31, "precision": 0.67, "recall": 0.72}},
        "stale": [],
    }
    rows = result_rows(comp)
    assert rows[0][-2:] == ["p (BLEU) vs baseline", "p (BLEU) vs bahdanau"]
    assert rows[1][-2:] == ["0.0010", "(itself)"] and rows[2][-1] == "–" and rows[3][-1] == "0.2000"
    assert alignment_rows(comp) == [
        ["system", "test BLEU", "europarl-de-en: AER (P / R)"],
        ["bahdanau", "30.00", "0.800 (0.250 / 0.125)"],
        ["dot", "31.00", "0.750 (0.250 / 0.125)"],
        ["eflomal, grow-diag-final-and (no model)", "–", "0.310 (0.670 / 0.720)"],
        ["diagonal (no model)", "–", "0.671"],
    ]
    figures = {"bleu_by_length.png": b"png", "training_curves.png": b"png"}
    assert "<h2>Alignment error rate</h2>" in render_html(comp, [], None, Path("."), figures)
    assert "## Alignment error rate" in render_markdown(comp, [], None, Path("."))
    assert alignment_rows(comparison()) is None


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


def test_aer_of_an_older_checkpoint_is_left_out(tmp_path):
    """compare.sh rewrites aer.json after a new best.pt; until then the report must not mix checkpoints."""
    for name, step in (("fresh", 7), ("old", 3)):
        folder = tmp_path / name / "aer" / "europarl-de-en"
        folder.mkdir(parents=True)
        score = {"aer": 0.8, "precision": 0.2, "recall": 0.1}
        aer = {"step": step, "model": score, "diagonal_baseline": {**score, "aer": 0.67}, "sentences": 100}
        (folder / "aer.json").write_text(json.dumps(aer))
    systems = {name: [SimpleNamespace(dir=tmp_path / name, best_step=7)] for name in ("fresh", "old")}
    scores = alignment_scores(systems)
    assert scores["systems"] == {"fresh": {"europarl-de-en": {**score, "sentences": 100}}}
    assert scores["diagonal"] == {"europarl-de-en": 0.67}
    assert scores["stale"] == [str(tmp_path / "old" / "aer" / "europarl-de-en" / "aer.json")]


def test_eflomal_beside_a_run_gives_the_table_its_row(tmp_path):
    folder = tmp_path / "run" / "aer" / "hansards-en-fr"
    (folder / "eflomal").mkdir(parents=True)
    score = {"aer": 0.7, "precision": 0.3, "recall": 0.3}
    aer = {"step": 7, "model": score, "diagonal_baseline": {**score, "aer": 0.54}, "sentences": 447}
    (folder / "aer.json").write_text(json.dumps(aer))
    statistical = {"model": {"aer": 0.15, "precision": 0.83, "recall": 0.87}, "sentences": 447}
    (folder / "eflomal" / "aer.json").write_text(json.dumps(statistical))
    scores = alignment_scores({"run": [SimpleNamespace(dir=tmp_path / "run", best_step=7)]})
    assert scores["eflomal"] == {"hansards-en-fr": {**statistical["model"], "sentences": 447}}
