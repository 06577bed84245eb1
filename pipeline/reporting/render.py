"""Render a comparison as Markdown and as one self-contained HTML page.

Every piece of text that came from data or files (sources, references,
hypotheses, paths, config values) goes through :func:`html.escape` in the HTML;
figures are inlined as base64 PNG so the page needs nothing beside it.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path


def _pm(value: float | None, ci: float | None, sd: float | None = None) -> str:
    text = "–" if value is None else f"{value:.2f}"
    if sd is not None:
        text += f" (sd {sd:.2f})"
    return text + (f" ± {ci:.2f}" if ci else "")


def result_rows(comparison: dict) -> list[list[str]]:
    """Header and one row per system: scores with 95% CIs, size, time, p-values vs the baseline (and additive)."""
    sig = comparison.get("significance") or {}
    vs_additive = comparison.get("significance_vs_additive") or {}
    header = ["system", "BLEU", "chrF", "TER", "params", "train min", "best step"]
    header.append("p (BLEU) vs " + sig.get("baseline", "–"))
    rows = [header + (["p (BLEU) vs " + vs_additive["baseline"]] if vs_additive else [])]
    for name, s in comparison["systems"].items():
        row = [
            name,
            _pm(s["bleu"], s.get("bleu_ci95"), s.get("bleu_sd")),
            _pm(s["chrf"], s.get("chrf_ci95"), s.get("chrf_sd")),
            _pm(s["ter"], s.get("ter_ci95"), s.get("ter_sd")),
            f"{s['params']:,}",
            f"{s['train_minutes']:.1f}",
            str(s["best_step"]),
            _p_cell(sig, name),
        ]
        rows.append(row + ([_p_cell(vs_additive, name)] if vs_additive else []))
    return rows


def _p_cell(sig: dict, name: str) -> str:
    if name == sig.get("baseline"):
        return "(itself)"
    p = (sig.get("comparisons") or {}).get(name, {}).get("bleu_p_value")
    return "–" if p is None else f"{p:.4f}"


def alignment_rows(comparison: dict) -> list[list[str]] | None:
    """AER (precision / recall) per attention system and gold set with its test BLEU, then eflomal's and
    the diagonal's; None without scores."""
    scores = comparison.get("alignment") or {}
    if not scores.get("systems"):
        return None
    golds = sorted(scores["diagonal"])
    rows = [["system", "test BLEU"] + [f"{g}: AER (P / R)" for g in golds]]

    def cell(a: dict | None) -> str:
        return "–" if a is None else f"{a['aer']:.3f} ({a['precision']:.3f} / {a['recall']:.3f})"

    for name, by_gold in scores["systems"].items():
        bleu = comparison["systems"].get(name, {}).get("bleu")
        rows.append([name, "–" if bleu is None else f"{bleu:.2f}"] + [cell(by_gold.get(g)) for g in golds])
    eflomal = scores.get("eflomal") or {}
    if eflomal:
        rows.append(["eflomal, grow-diag-final-and (no model)", "–"] + [cell(eflomal.get(g)) for g in golds])
    rows.append(["diagonal (no model)", "–"] + [f"{scores['diagonal'][g]:.3f}" for g in golds])
    return rows


def variant_rows(comparison: dict) -> list[list[str]] | None:
    """One row per system decoded by other weights (average, EMA, ensemble), against its single model."""
    variants = comparison.get("variants") or {}
    if not variants:
        return None
    rows = [["system", "weights", "BLEU", "chrF", "Δ BLEU", "p (BLEU) vs single", "decoding time × single"]]
    for name, found in variants.items():
        for v in found:
            cost, p = v.get("decode_time_vs_single"), v.get("p_value_vs_single")
            rows.append(
                [
                    name,
                    v["label"],
                    _pm(v["bleu"], v.get("bleu_ci95")),
                    f"{v['chrf']:.2f}",
                    "–" if p is None else f"{v['delta_bleu']:+.2f}",
                    "–" if p is None else f"{p:.4f}",
                    "–" if cost is None else f"{cost:.2f}",
                ]
            )
    return rows


VARIANT_NOTE = (
    "The same system decoded with other weights: the mean of its last (or best) checkpoints "
    "(pipeline.average), the moving average of its weights (train.ema), or an ensemble of runs "
    "(checkpoint=[A,B]: the mean of their log-probabilities per step). Each is compared with the "
    "single model, the system's first run as in the table above, by paired bootstrap resampling; "
    "decoding time is measured by each evaluation on its own (a ratio from separate processes)."
)


def test_set_rows(comparison: dict) -> list[list[str]] | None:
    """One row per test set found: each system's BLEU (chrF), the mean over its seeds; None for the test set only."""
    sets = comparison.get("test_sets") or {}
    if len(sets) < 2:
        return None
    names = list(comparison["systems"])
    rows = [["test set", "sentences"] + [f"{n}: BLEU (chrF)" for n in names]]
    for name, by_system in sets.items():
        first = next(iter(by_system.values()))
        cells = [
            "–"
            if n not in by_system
            else f"{_pm(by_system[n]['bleu'], by_system[n].get('bleu_ci95'))} ({by_system[n]['chrf']:.1f})"
            for n in names
        ]
        rows.append([name, str(first["n_sentences"])] + cells)
    return rows


TEST_SET_NOTE = (
    "Every Multi30k test set found beside the corpus (report.test_sets to choose), decoded as above. "
    "Only the first (test, i.e. test_2016_flickr) was seen while this pipeline's settings were chosen; "
    "the later ones measure the comparison on data no run was tuned on."
)


ALIGNMENT_NOTE = (
    "Alignment error rate (Och & Ney 2003; lower is better) of the attention when force-decoding "
    "the reference of each human gold set, read off by align.extraction (conf/align.yaml). The "
    "gold sets are out of domain for a Multi30k model. eflomal aligned the gold sentences beside "
    "the training corpus (both directions, grow-diag-final-and). The diagonal row links target "
    "word t (0-based) to source word floor((t + 0.5) |src| / |tgt|), ignoring the model."
)


def length_rows(comparison: dict) -> list[list[str]]:
    names = list(comparison["by_length"])
    first = comparison["by_length"][names[0]]
    rows = [["source words", "n"] + names]
    for k, b in enumerate(first):
        rows.append(
            [f"{b['min_len']}–{b['max_len']}", str(b["n"])]
            + [
                _pm(comparison["by_length"][n][k]["bleu"], comparison["by_length"][n][k].get("bleu_ci95"))
                for n in names
            ]
        )
    return rows


def _md_table(rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(esc[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]])


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _heading(comparison: dict) -> str:
    return f"Attention vs no attention: {comparison['split']} set, {comparison['decode']} decoding"


def _significance_text(comparison: dict) -> str:
    text = ""
    for key in ("significance", "significance_vs_additive"):
        sig = comparison.get(key)
        if sig:
            parts = [
                f"{k}: p = {v['bleu_p_value']:.4f} (BLEU), {v['chrf_p_value']:.4f} (chrF)"
                for k, v in sig["comparisons"].items()
            ]
            text += f"{sig['method']}. " + "; ".join(parts) + ". "
    return text.strip() or "Only one system: no significance test."


def _rel(target: Path, out: Path) -> str:
    return Path(os.path.relpath(target.resolve(), out.resolve())).as_posix()


def render_markdown(comparison: dict, examples: list[dict], gallery: dict | None, out: Path) -> str:
    parts = [
        f"# {_heading(comparison)}",
        "",
        _md_table(result_rows(comparison)),
        "",
        _significance_text(comparison) + " Scores ± are 95% bootstrap confidence intervals.",
        "",
        "## BLEU by source length",
        "",
        "![BLEU by source length](bleu_by_length.png)",
        "",
        _md_table(length_rows(comparison)),
        "",
        "## Training curves",
        "",
        "![validation BLEU against steps and minutes](training_curves.png)",
        "",
    ]
    for title, rows, note in _optional_tables(comparison):
        parts += [f"## {title}", "", _md_table(rows), "", note, ""]
    parts += [
        "## Examples",
        "",
    ]
    for ex in examples:
        parts += [
            f"**sentence {ex['id']}** ({len(ex['src'].split())} words)",
            "",
            f"- source: {ex['src']}",
            f"- reference: {ex['ref']}",
        ]
        parts += [f"- {name}: {hyp}" for name, hyp in ex["hyps"].items()] + [""]
    if gallery:
        parts += [
            "## Alignments",
            "",
            f"Interactive viewer ({gallery['system']}): [{_rel(gallery['index'], out)}]({_rel(gallery['index'], out)})",
            "",
        ]
        if gallery["image"]:
            parts += [f"![attention heatmap]({_rel(gallery['image'], out)})", ""]
    parts += [
        "## Manifest",
        "",
        "```json",
        json.dumps(_manifest_summary(comparison), indent=2, ensure_ascii=False),
        "```",
        "",
    ]
    return "\n".join(parts)


def _optional_tables(comparison: dict) -> list[tuple[str, list[list[str]], str]]:
    """(title, rows, note) of each table that has something to show."""
    tables = [
        ("Test sets", test_set_rows(comparison), TEST_SET_NOTE),
        ("Checkpoint averaging, EMA and ensembles", variant_rows(comparison), VARIANT_NOTE),
        ("Alignment error rate", alignment_rows(comparison), ALIGNMENT_NOTE),
    ]
    return [(title, rows, note) for title, rows, note in tables if rows]


def _manifest_summary(comparison: dict) -> dict:
    """Per run: commit, data fingerprint, seed, software, device, sacrebleu signatures (configs in comparison.json)."""
    summary = {run: {k: v for k, v in m.items() if k != "config"} for run, m in comparison["manifest"].items()}
    return {"runs": summary, "signatures": comparison["signatures"]}


_CSS = """
body { font: 15px/1.5 system-ui, "DejaVu Sans", sans-serif; max-width: 1100px; margin: 2em auto;
       color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.example { border-left: 3px solid #ccc; padding-left: .8em; margin: 1em 0; }
.example dt { font-weight: bold; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }
"""


def render_html(
    comparison: dict, examples: list[dict], gallery: dict | None, out: Path, figures: dict[str, bytes]
) -> str:
    def img(name: str, alt: str) -> str:
        data = base64.b64encode(figures[name]).decode("ascii")
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

    ex_html = []
    for ex in examples:
        rows = [("source", ex["src"]), ("reference", ex["ref"])] + list(ex["hyps"].items())
        items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
        ex_html.append(
            f'<div class="example"><h3>sentence {ex["id"]} ({len(ex["src"].split())} words)</h3><dl>{items}</dl></div>'
        )
    gallery_html = ""
    if gallery:
        link = html.escape(_rel(gallery["index"], out))
        system = html.escape(gallery["system"])
        gallery_html = f'<h2>Alignments</h2><p>Interactive viewer ({system}): <a href="{link}">{link}</a></p>'
        if gallery["image"]:
            data = base64.b64encode(Path(gallery["image"]).read_bytes()).decode("ascii")
            gallery_html += f'<img alt="attention heatmap" src="data:image/png;base64,{data}">'
    manifest = html.escape(json.dumps(_manifest_summary(comparison), indent=2, ensure_ascii=False))
    configs = html.escape(
        json.dumps({k: v["config"] for k, v in comparison["manifest"].items()}, indent=2, ensure_ascii=False)
    )
    systems = " ".join(f'<span class="system">{html.escape(k)}</span>' for k in comparison["systems"])
    optional_html = "".join(
        f"<h2>{html.escape(title)}</h2>{_html_table(rows)}<p>{html.escape(note)}</p>"
        for title, rows, note in _optional_tables(comparison)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(_heading(comparison))}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(_heading(comparison))}</h1>
<p>Systems: {systems}</p>
{_html_table(result_rows(comparison))}
<p>{html.escape(_significance_text(comparison))} Scores ± are 95% bootstrap confidence intervals.</p>
<h2>BLEU by source length</h2>
{img("bleu_by_length.png", "BLEU by source length")}
{_html_table(length_rows(comparison))}
<h2>Training curves</h2>
{img("training_curves.png", "validation BLEU against steps and minutes")}
{optional_html}
<h2>Examples</h2>
{"".join(ex_html)}
{gallery_html}
<h2>Manifest</h2>
<pre>{manifest}</pre>
<details><summary>resolved configs</summary><pre>{configs}</pre></details>
<script>document.body.dataset.viewer = "ready";</script>
</body></html>
"""
