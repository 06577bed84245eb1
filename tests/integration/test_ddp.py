"""Data-parallel training under torchrun, on the CPU with the gloo backend."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from tinydata import REPO, TINY_OVERRIDES, write_slice

from pipeline.training.checkpoint import load_checkpoint

NO_DROPOUT = ["model.dropout=0", "model.encoder.dropout=0"]  # each rank draws its own dropout masks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(tmp_path, run: str, *overrides: str, ranks: int = 1) -> subprocess.CompletedProcess:
    data = write_slice(tmp_path / "m30k")
    launcher = [sys.executable, "-m", "pipeline.train"]
    if ranks > 1:
        launcher = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
            f"--master_port={_free_port()}", "-m", "pipeline.train",
        ]  # fmt: skip
    cmd = [
        *launcher,
        f"data.local_dir={data}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"run_dir={tmp_path / run}",
        *TINY_OVERRIDES,
        *NO_DROPOUT,
        *overrides,
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_ranks_take_the_same_update_as_one_process_accumulating_both_batches(tmp_path):
    """Rank r trains on batch r of each pair; one process accumulates the pair: the same first update."""
    # fp32: under bf16 (precision=auto on a CPU with bf16) the two runs once differed beyond 1e-6 while
    # two pytest workers loaded the machine (2026-12-08, Zen 4; not reproduced alone); Adam turns
    # any difference in a near-zero gradient into a full lr-sized step, so bf16 rounding is no test of DDP
    exact = "train.precision=fp32"
    _train(tmp_path, "ddp", "train.max_steps=1", exact, ranks=2)
    _train(tmp_path, "single", "train.max_steps=1", "train.accum_steps=2", exact)
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    single = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, atol=1e-6, rtol=0, msg=key)
    assert ddp["progress"]["batch_in_epoch"] == single["progress"]["batch_in_epoch"] == 2
    # written once, by rank 0: one step checkpoint, one validation record, no stray temp files
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == [
        "best.pt",
        "last.pt",
        "step-00000001.pt",
    ]
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [1]
    assert isinstance(ddp["rng"], list) and len(ddp["rng"]) == 2  # one random state per rank


@pytest.mark.slow
def test_a_two_rank_run_resumes_with_one_process(tmp_path):
    _train(tmp_path, "run", "train.max_steps=2", ranks=2)
    proc = _train(tmp_path, "run", "train.max_steps=4")
    assert "resuming from" in proc.stdout and "at step 2" in proc.stdout
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 4


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def _local_rank(pid: int) -> str | None:
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    return next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"LOCAL_RANK=")), None)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks through /proc")
def test_a_dead_rank_stops_the_run_with_an_error_instead_of_hanging(tmp_path):
    """SIGKILL rank 1 mid-training: torchrun stops rank 0 and exits non-zero within a bounded time,
    naming the failed rank, and every checkpoint left behind is intact."""
    data = write_slice(tmp_path / "m30k")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        "-m", "pipeline.train", f"data.local_dir={data}", f"data.cache_dir={tmp_path / 'cache'}",
        f"run_dir={tmp_path / 'run'}", *TINY_OVERRIDES, "train.max_steps=100000", "train.max_epochs=1000",
        "train.eval_every=20", "train.dist_timeout_minutes=1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "run" / "checkpoints" / "best.pt").exists():  # past the first validation
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.5)
        rank1 = [pid for pid in _children(proc.pid) if _local_rank(pid) == "1"]
        assert rank1, "rank 1 not found"
        os.kill(rank1[0], signal.SIGKILL)
        started = time.monotonic()
        _, err = proc.communicate(timeout=240)  # torchrun: SIGTERM to the others, SIGKILL 30 s later
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert time.monotonic() - started < 240
    assert "local_rank: 1" in err or "rank 1" in err.lower(), err[-2000:]
    for ckpt in (tmp_path / "run" / "checkpoints").glob("*.pt"):
        load_checkpoint(ckpt)  # raises on a torn file
