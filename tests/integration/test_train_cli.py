"""`python -m pipeline.train` end to end, as a user runs it, on a 300-pair slice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from clirun import assert_user_error, run
from tinydata import REPO, TINY_OVERRIDES, write_slice

from pipeline.runtime.hardware import resolve_device
from pipeline.runtime.precision import use_bf16
from pipeline.training.run_lock import RunLock


def run_train(tmp_path, *overrides):
    data = write_slice(tmp_path / "m30k")
    cmd = [
        sys.executable,
        "-m",
        "pipeline.train",
        f"data.local_dir={data}",
        f"data.cache_dir={tmp_path / 'cache'}",
        *TINY_OVERRIDES,
        *overrides,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bahdanau", "baseline"])
def test_train_cli_writes_every_output(tmp_path, model):
    run_dir = tmp_path / "run"
    proc = run_train(tmp_path, f"model={model}", f"run_dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("config.yaml", "tokenizer/joint.model", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [3, 6]
    val = [r for r in records if r["kind"] == "val"]
    assert {"loss", "ppl", "bleu", "chrf"} <= val[0].keys() and "tok:13a" in val[0]["signatures"]["bleu"]
    assert ("attn_entropy" in val[0]) == (model == "bahdanau")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["step"] == 6 and summary["model"] == model
    # train.precision and train.device default to auto: the manifest records what they resolved to here
    expected = "bf16" if use_bf16("auto", resolve_device("auto")) else "fp32"
    assert json.loads((run_dir / "manifest.json").read_text())["precision"] == expected
    assert summary["precision"] == expected and f"precision {expected} (train.precision=auto)" in proc.stdout


@pytest.mark.slow
def test_train_cli_bad_key_and_bad_value(tmp_path):
    proc = run_train(tmp_path, f"run_dir={tmp_path / 'run'}", "train.no_such_knob=1")
    assert proc.returncode != 0 and "no_such_knob" in proc.stderr
    proc = run_train(tmp_path, f"run_dir={tmp_path / 'run'}", "train.max_steps=lots")
    assert proc.returncode != 0 and "max_steps" in proc.stderr


@pytest.mark.slow
def test_guided_alignment_computes_the_links_once_and_logs_its_loss(tmp_path):
    pytest.importorskip("eflomal")
    guided = ["model=bahdanau", "train.guided_alignment.weight=0.5", "train.log_every=1"]
    first = run_train(tmp_path, *guided, f"run_dir={tmp_path / 'a'}")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "runs as the reference (it needs attention gradients)" in first.stdout
    cached = list((tmp_path / "cache" / "guided").glob("train-*.npz"))
    assert len(cached) == 1
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    guided_losses = [r["guided_loss"] for r in records if r["kind"] == "train"]
    assert guided_losses and all(v > 0 for v in guided_losses)
    mtime = cached[0].stat().st_mtime_ns
    data = tmp_path / "m30k"
    again = subprocess.run(  # prepare of the same data and settings, as compare.sh runs it
        [sys.executable, "-m", "pipeline.prepare", f"data.local_dir={data}", f"data.cache_dir={tmp_path / 'cache'}",
         *TINY_OVERRIDES, *guided],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "guided-alignment links of train:" in again.stdout and "(reused)" in again.stdout
    assert cached[0].stat().st_mtime_ns == mtime  # read from the cache, not aligned again


@pytest.mark.slow
def test_guided_alignment_of_a_model_without_attention_is_one_line(tmp_path):
    proc = run_train(tmp_path, "model=baseline", "train.guided_alignment.weight=0.5", f"run_dir={tmp_path / 'r'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "guides attention, and model=baseline has none" in proc.stderr


@pytest.mark.slow
def test_a_second_writer_of_a_run_dir_stops_with_one_line_and_changes_nothing(tmp_path, trained):
    """While one process holds a run (here this test, through the lock train takes), train and average
    on it exit 2 naming the holder; the run's files stay as they were."""
    run_dir = trained["ckpt"].parent.parent
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    with RunLock(run_dir, "test"):
        proc = run_train(tmp_path, f"run_dir={run_dir}", "train.max_steps=12")
        assert_user_error(proc, f"run_dir {run_dir} is in use by pid {os.getpid()} on host", "choose another run_dir")
        assert_user_error(run("average", f"run_dir={run_dir}", "last=1"), f"is in use by pid {os.getpid()}")
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
