"""Checkpoint averaging (pipeline.average): which checkpoints, their mean, a file every command reads."""

from __future__ import annotations

import json

import pytest
import torch
from tinydata import tiny_train_config, write_slice

from pipeline.errors import UserError
from pipeline.training.averaging import average, candidates
from pipeline.training.checkpoint import load_checkpoint, newest_intact, restore
from pipeline.training.trainer import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """12 steps, validated and saved every 3, the last 4 step files kept (steps 3, 6, 9, 12)."""
    tmp = tmp_path_factory.mktemp("avg")
    cfg = tiny_train_config(tmp, write_slice(tmp / "m30k"), max_steps=12, eval_every=3, keep_checkpoints=4)
    train(cfg)
    return tmp / "run"


def test_last_n_is_the_mean_of_the_newest_step_files(run, tmp_path):
    done = average(run, last=2, out=str(tmp_path / "avg.pt"))
    assert done["steps"] == [9, 12]
    a, b = (load_checkpoint(run / "checkpoints" / f"step-{s:08d}.pt")["model"] for s in (9, 12))
    avg = load_checkpoint(tmp_path / "avg.pt")
    for key in a:
        assert torch.allclose(avg["model"][key], (a[key] + b[key]) / 2, atol=1e-7), key
    assert avg["averaged"]["selection"] == "last=2" and "optimizer" not in avg
    restored = restore(tmp_path / "avg.pt")  # a checkpoint like any other for decoding
    assert restored.averaged["steps"] == [9, 12] and restored.step == 12


def test_best_n_ranks_by_validation_bleu_and_the_default_file_stays_out_of_resume(run):
    found = {c.step: c.bleu for c in candidates(run)}
    logged = {
        r["step"]: r["bleu"]
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == "val"
    }
    assert found == {s: logged[s] for s in (3, 6, 9, 12)}
    done = average(run, best=2)
    want = sorted(sorted(found, key=lambda s: (-found[s], -s))[:2])
    assert done["steps"] == want
    assert done["path"].endswith("checkpoints/average-best2.pt")
    assert newest_intact(run / "checkpoints")[0].name == "last.pt"


@pytest.mark.parametrize(
    ("last", "best", "message"),
    [
        (None, None, "exactly one of last=N"),
        (2, 2, "exactly one of last=N"),
        (5, None, "has 4 step checkpoints, fewer than the 5 asked for.*train.keep_checkpoints"),
        (0, None, "last=0: give a number"),
    ],
)
def test_bad_selections_are_one_line_errors(run, last, best, message):
    with pytest.raises(UserError, match=message):
        average(run, last=last, best=best)
