"""pipeline.reporting.report end to end on synthetic runs: no checkpoints, no training, a few sentences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pipeline.reporting.report as report_module
from pipeline.config import DecodeConfig, ReportAppConfig, Split
from pipeline.errors import UserError
from pipeline.reporting.report import Run, report

SRCS = [" ".join(f"w{j}" for j in range(n)) for n in range(3, 15)]
REFS = [f"the cat sat on mat number {i} today" for i in range(len(SRCS))]


def fake_run(tmp: Path, name: str, score: str | None, quality: int) -> Run:
    """A run of model ``name``: attention with ``score`` (None: no attention); ``quality`` words right per hyp."""
    hyps = [" ".join(ref.split()[:quality] + ["x"] * (len(ref.split()) - quality)) for ref in REFS]
    bucket = {"min_len": 3, "max_len": 14, "n": len(SRCS), "bleu": 10.0 * quality, "bleu_ci95": 1.0}
    attention = {"score": score, "placement": "bahdanau"} if score else {}
    return Run(
        dir=tmp / name,
        name=name,
        has_attention=score is not None,
        config={"model": {"name": name, "attention": attention}, "train": {"seed": 1}, "data": {}},
        manifest={"seed": 1},
        params=100 + quality,
        train_minutes=1.0,
        best_step=10,
        curve=[{"step": 10, "bleu": 5.0 * quality, "elapsed_min": 1.0}],
        eval={"bleu": 10.0 * quality, "chrf": 40.0, "ter": 60.0, "by_length": [bucket], "signatures": {}},
        hyps=hyps,
    )


def run_report(tmp_path: Path, monkeypatch, models: list[tuple[str, str | None]]) -> tuple[dict, Path]:
    runs = {name: fake_run(tmp_path, name, score, quality=3 + i) for i, (name, score) in enumerate(models)}
    monkeypatch.setattr(report_module, "load_run", lambda run_dir, split, tag: runs[Path(run_dir).name])
    monkeypatch.setattr(report_module, "read_inputs", lambda *args, **kwargs: ("test", SRCS, REFS))
    cfg = ReportAppConfig(
        runs=[str(tmp_path / name) for name, _ in models],
        out=str(tmp_path / "report"),
        split=Split.test,
        decode=DecodeConfig(),
        n_bootstrap=50,
    )
    report(cfg)
    out = tmp_path / "report"
    return json.loads((out / "comparison.json").read_text()), out


def test_attention_variants_without_a_baseline_test_against_the_first_system(tmp_path, monkeypatch):
    """Issue #10: additive, dot and general only (no run without attention) used to raise KeyError: 'bahdanau'."""
    comparison, out = run_report(
        tmp_path, monkeypatch, [("bahdanau", "additive"), ("dot", "dot"), ("general", "general")]
    )
    sig = comparison["significance"]
    assert sig["baseline"] == "bahdanau" and set(sig["comparisons"]) == {"dot", "general"}
    assert "no system without attention" in sig["method"] and "bahdanau" in sig["method"]
    assert comparison["significance_vs_additive"] is None  # additive is the reference: it would repeat the test
    markdown = (out / "report.md").read_text()
    assert "p (BLEU) vs bahdanau" in markdown and markdown.count("p (BLEU) vs bahdanau") == 1
    assert "no system without attention" in (out / "report.html").read_text()


def test_variants_without_a_baseline_test_against_additive_when_it_is_not_the_reference(tmp_path, monkeypatch):
    comparison, out = run_report(
        tmp_path, monkeypatch, [("dot", "dot"), ("bahdanau", "additive"), ("general", "general")]
    )
    assert comparison["significance"]["baseline"] == "dot"
    vs_additive = comparison["significance_vs_additive"]
    assert vs_additive["baseline"] == "bahdanau" and set(vs_additive["comparisons"]) == {"general"}
    assert "p (BLEU) vs bahdanau" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "models",
    [
        [("dot", "dot"), ("general", "general"), ("scaled_dot", "scaled_dot")],  # no additive system at all
        [("bahdanau", "additive"), ("dot", "dot")],
    ],
)
def test_any_two_or_more_attention_systems_get_a_report(tmp_path, monkeypatch, models):
    comparison, out = run_report(tmp_path, monkeypatch, models)
    assert comparison["significance"]["baseline"] == models[0][0]
    assert comparison["significance_vs_additive"] is None
    assert (out / "report.html").stat().st_size > 0


def test_a_run_without_attention_stays_the_baseline_wherever_it_is_listed(tmp_path, monkeypatch):
    comparison, _ = run_report(tmp_path, monkeypatch, [("bahdanau", "additive"), ("baseline", None), ("dot", "dot")])
    sig = comparison["significance"]
    assert sig["baseline"] == "baseline" and "no system without attention" not in sig["method"]
    vs_additive = comparison["significance_vs_additive"]
    assert vs_additive["baseline"] == "bahdanau" and set(vs_additive["comparisons"]) == {"dot"}


def _write_eval(run_dir: Path, name: str, bleu: float, hyps: list[str], sps: float = 100.0) -> None:
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    result = {"bleu": bleu, "bleu_ci95": 1.0, "chrf": 40.0, "ter": 50.0, "n_sentences": len(hyps)}
    (run_dir / "eval" / f"{name}.json").write_text(json.dumps({**result, "sentences_per_second": sps}))
    (run_dir / "eval" / f"{name}.hyp.txt").write_text("".join(f"{h}\n" for h in hyps))


def test_later_test_sets_and_other_weights_get_rows_of_their_own(tmp_path, monkeypatch):
    runs = {
        "bahdanau": fake_run(tmp_path, "bahdanau", "additive", 4),
        "baseline": fake_run(tmp_path, "baseline", None, 3),
    }
    for run in runs.values():
        run.eval["sentences_per_second"] = 100.0
        _write_eval(run.dir, "test.greedy", run.eval["bleu"], run.hyps)
        _write_eval(run.dir, "test_2017_flickr.greedy", run.eval["bleu"] - 5, run.hyps)
    _write_eval(runs["bahdanau"].dir, "test.greedy.ensemble2", 48.0, REFS, sps=45.0)  # perfect: significant
    _write_eval(runs["bahdanau"].dir, "test.greedy.average-last5", 40.0, runs["bahdanau"].hyps)  # same output
    monkeypatch.setattr(report_module, "load_run", lambda run_dir, split, tag: runs[Path(run_dir).name])
    monkeypatch.setattr(report_module, "read_inputs", lambda *args, **kwargs: ("test", SRCS, REFS))
    cfg = ReportAppConfig(
        runs=[str(run.dir) for run in runs.values()],
        out=str(tmp_path / "report"),
        decode=DecodeConfig(),
        n_bootstrap=50,
        test_sets=[Split.test, Split.test_2017_flickr],
    )
    comparison = report(cfg)
    assert comparison["test_sets"]["test_2017_flickr"]["baseline"]["bleu"] == 25.0
    found = {v["variant"]: v for v in comparison["variants"]["bahdanau"]}
    assert found["single"]["bleu"] == 40.0 and found["single"]["p_value_vs_single"] is None
    assert found["ensemble2"]["label"] == "ensemble of 2" and found["ensemble2"]["p_value_vs_single"] < 0.05
    assert found["ensemble2"]["decode_time_vs_single"] == pytest.approx(100 / 45)
    assert found["average-last5"]["delta_bleu"] == 0.0 and 0 <= found["average-last5"]["p_value_vs_single"] <= 1
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Test sets" in markdown and "| test_2017_flickr | 12 |" in markdown
    assert "average of the last 5 checkpoints" in markdown and "## Checkpoint averaging, EMA and ensembles" in markdown
    cfg.test_sets = [Split.test_2018_flickr]
    with pytest.raises(UserError, match="no evaluation on test_2018_flickr .* split=test_2018_flickr"):
        report(cfg)
