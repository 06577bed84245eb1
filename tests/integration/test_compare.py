"""`scripts/compare.sh` end to end on a tiny slice: train both, evaluate, align, report; then reuse."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from clirun import compare, render_in_chromium
from tinydata import REPO, write_slice


@pytest.fixture(scope="module")
def two_systems(tmp_path_factory):
    """One quick comparison of bahdanau and baseline on a tiny slice: (its --out folder, the
    slice, the prepared-data cache, the run).  The tests below read it, rerun it, or extend a
    copy of it, so the two models are trained once for all of them."""
    tmp = tmp_path_factory.mktemp("compare")
    data, cache = write_slice(tmp / "m30k"), tmp / "cache"
    return tmp / "runs", data, cache, compare(tmp / "runs", data, cache)


@pytest.mark.slow
def test_compare_writes_the_report_and_reuses_finished_work(two_systems, tmp_path):
    runs, data, cache, first = two_systems
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = runs / "report"
    for name in ("comparison.json", "report.md", "report.html", "bleu_by_length.png", "training_curves.png"):
        assert (report / name).stat().st_size > 0, name
    for model in ("bahdanau", "baseline"):
        for split in ("val", "test"):
            for tag in ("greedy", "beam5-lp0.6"):
                assert (runs / model / "eval" / f"{split}.{tag}.json").exists()
    assert (runs / "bahdanau" / "align" / "test.greedy" / "index.html").exists()
    assert not (runs / "baseline" / "align").exists()
    assert (runs / "bahdanau" / "aer" / "europarl-de-en" / "eflomal" / "aer.json").exists()  # the yardstick

    comparison = json.loads((report / "comparison.json").read_text())
    assert set(comparison["systems"]) == {"bahdanau", "baseline"}
    for system in comparison["systems"].values():
        assert {"bleu", "bleu_ci95", "chrf", "ter", "params", "train_minutes", "best_step"} <= system.keys()
    assert comparison["systems"]["bahdanau"]["params"] > comparison["systems"]["baseline"]["params"]
    assert comparison["significance"]["baseline"] == "baseline"
    assert 0.0 <= comparison["significance"]["p_value"] <= 1.0
    assert set(comparison["by_length"]) == {"bahdanau", "baseline"}
    for manifest in comparison["manifest"].values():
        assert {"git_commit", "dataset_fingerprint", "seed", "torch", "device", "config"} <= manifest.keys()

    page = (report / "report.html").read_text()
    assert "bahdanau" in page and "baseline" in page and "data:image/png;base64," in page
    dom, log = render_in_chromium(report / "report.html", tmp_path)
    assert 'data-viewer="ready"' in dom, log[-2000:]

    again = compare(runs, data, cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already finished") == 2
    assert again.stdout.count("is up to date") == 10  # 8 evaluations, 1 alignment export, 1 AER (europarl-de-en)


@pytest.mark.slow
def test_compare_more_systems_tests_each_against_the_baseline_and_additive(two_systems, tmp_path):
    """dot and guided alignment added to a finished comparison (a copy of it): only they train."""
    finished, data, cache, first = two_systems
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs)  # copy2 keeps the times that mark evaluations up to date
    proc = compare(runs, data, cache, "--models", "baseline,bahdanau,dot", "--guided", "0.5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("already finished") == 2
    comparison = json.loads((runs / "report" / "comparison.json").read_text())
    systems = {"baseline", "bahdanau", "dot", "bahdanau_guided"}
    assert set(comparison["systems"]) == set(comparison["by_length"]) == systems
    assert set(comparison["significance"]["comparisons"]) == systems - {"baseline"}
    vs_additive = comparison["significance_vs_additive"]
    assert vs_additive["baseline"] == "bahdanau" and set(vs_additive["comparisons"]) == {"dot", "bahdanau_guided"}
    assert (runs / "dot" / "align" / "test.greedy" / "index.html").exists()
    page = (runs / "report" / "report.html").read_text()
    assert "each system vs bahdanau" in page and "dot" in page
    # AER on the gold set of the run's pair (europarl-de-en; hansards-en-fr is another pair), every attention system
    aer = comparison["alignment"]
    assert set(aer["systems"]) == {"bahdanau", "dot", "bahdanau_guided"} and set(aer["diagonal"]) == {"europarl-de-en"}
    assert set(aer["eflomal"]) == {"europarl-de-en"}
    assert all(0.0 <= s["europarl-de-en"]["aer"] <= 1.0 for s in aer["systems"].values())
    assert "<h2>Alignment error rate</h2>" in page


def test_a_missing_gold_folder_is_one_line_before_any_work(tmp_path):
    proc = subprocess.run(
        ["bash", "scripts/compare.sh", "quick", "--gold", str(tmp_path / "nowhere"), "--out", str(tmp_path / "runs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "--gold" in proc.stderr and "nowhere" in proc.stderr
