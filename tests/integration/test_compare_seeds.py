"""`scripts/compare.sh ... seeds=2`: two seeds per arm, their average, EMA and ensemble rows, and a later test set.

Its own module (not beside tests/integration/test_compare.py's shared comparison) so that the test
runner can give it to another worker: both train from scratch.
"""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from clirun import compare
from tinydata import write_slice


@pytest.mark.slow
def test_two_seeds_give_average_ema_and_ensemble_rows_and_a_later_test_set_its_own(tmp_path):
    """seeds=2 (here with --average 2: a tiny run keeps two step files) on the baseline alone, with a
    test_2017_flickr beside the slice: every extra evaluation lands in the report with a p-value."""
    data, cache = write_slice(tmp_path / "m30k"), tmp_path / "cache"
    for lang in ("de", "en"):  # a "later" test set: the slice's test sentences under that name, plain text
        (data / f"test_2017_flickr.{lang}").write_bytes(
            gzip.decompress((data / f"test_2016_flickr.{lang}.gz").read_bytes())
        )
    runs = tmp_path / "runs"
    proc = compare(runs, data, cache, "--models", "baseline", "seeds=2", "--average", "2", gold="none")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first = runs / "baseline-seed1234"
    assert {p.name for p in runs.iterdir()} == {"baseline-seed1234", "baseline-seed1235", "report"}
    assert "ema" in torch.load(first / "checkpoints" / "last.pt", weights_only=True)  # --ema 0.9999 by seeds=N
    comparison = json.loads((runs / "report" / "comparison.json").read_text())
    assert comparison["systems"]["baseline"]["seeds"] == [1234, 1235]
    assert set(comparison["test_sets"]) == {"test", "test_2017_flickr"}
    variants = {v["variant"]: v for v in comparison["variants"]["baseline"]}
    assert set(variants) == {"single", "average-last2", "ema", "ensemble2"}
    assert all(0 <= v["p_value_vs_single"] <= 1 for k, v in variants.items() if k != "single")
    assert variants["ensemble2"]["checkpoint"] == [
        str((runs / f"baseline-seed{s}" / "checkpoints" / "best.pt").resolve()) for s in (1234, 1235)
    ]
