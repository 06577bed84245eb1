"""The attentions of examples/, each in a user's own folder, through the whole pipeline with no
change to the package: ``scripts/compare.sh`` trains them (validating on the way), evaluates them
greedy and beam-5, plots their attention, writes Pharaoh links and AER against the gold sets, and
reports them side by side."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from tinydata import REPO, TINY_OVERRIDES, write_slice

GOLD = REPO.parent / "shared" / "data" / "alignment"
EXAMPLES = {"location": "location_attention.LocationAwareAttention", "cosine": "cosine_attention.CosineAttention"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Both example attentions, compared on a tiny slice (the second compare.sh run adds to the first's
    report): (runs folder, last compare.sh run)."""
    tmp = tmp_path_factory.mktemp("examples")
    user = tmp / "my_attentions"  # the user's own folder, outside the package
    user.mkdir()
    for module in EXAMPLES.values():
        shutil.copy(REPO / "examples" / f"{module.split('.')[0]}.py", user)
    data, cache, runs = write_slice(tmp / "m30k"), tmp / "cache", tmp / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user), str(REPO)])}
    common = ["--gold", str(GOLD), "--out", str(runs), f"data.local_dir={data}", f"data.cache_dir={cache}"]
    common += [*TINY_OVERRIDES, "train.max_minutes=null", "decode.max_len=12"]
    proc = None
    for name, cls in EXAMPLES.items():
        arm = ["--models", "bahdanau", f"model.attention_class={cls}", f"model.name={name}"]
        proc = subprocess.run(
            ["bash", "scripts/compare.sh", "quick", *arm, *common],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return runs, proc


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_an_example_attention_trains_decodes_aligns_and_is_reported(compared, name):
    runs, last = compared
    run = runs / name
    assert (run / "checkpoints" / "best.pt").is_file()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "val" and "attn_entropy" in r for r in metrics)  # validated, with its attention
    for tag in ("greedy", "beam5-lp0.6"):
        result = json.loads((run / "eval" / f"test.{tag}.json").read_text())
        assert result["n_sentences"] == len((run / "eval" / f"test.{tag}.hyp.txt").read_text().splitlines())
    heatmaps = run / "align" / "test.greedy"
    assert (heatmaps / "sent0000.png").read_bytes()[:4] == b"\x89PNG" and (heatmaps / "index.html").is_file()
    assert (heatmaps / "alignments.txt").read_text().strip()
    aer = json.loads((run / "aer" / "europarl-de-en" / "aer.json").read_text())
    assert 0.0 <= aer["model"]["aer"] <= 1.0
    comparison = json.loads((runs / "report" / "comparison.json").read_text())
    assert set(comparison["systems"]) == set(EXAMPLES)
    assert 0.0 <= comparison["alignment"]["systems"][name]["europarl-de-en"]["aer"] <= 1.0


@pytest.mark.slow
def test_training_says_the_user_attention_runs_on_the_reference_decoder(compared):
    runs, _ = compared
    for name in EXAMPLES:
        manifest = json.loads((runs / name / "manifest.json").read_text())
        assert manifest["implementations"]["decoder"] == "reference"  # no fast twin covers a user's class
