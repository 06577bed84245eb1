"""One writer per run directory: the lock train and average hold, raced, killed, and named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from tinydata import REPO

from pipeline.errors import UserError
from pipeline.training.run_lock import RunLock

CHILD = """
import sys, time
from pipeline.errors import UserError
from pipeline.training.run_lock import RunLock
from pathlib import Path
run_dir, start, hold = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
time.sleep(max(start - time.time(), 0))
try:
    with RunLock(run_dir, "train"):
        print("locked", flush=True)
        release = Path(run_dir) / "release"  # the winner holds on until the test has seen the loser exit
        deadline = time.time() + hold
        while time.time() < deadline and not release.exists():
            time.sleep(0.05)
except UserError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
"""


def _child(run_dir, start: float, hold: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir), str(start), str(hold)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_exit(pair: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while all(p.poll() is None for p in pair) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_of_two_writers_racing_for_a_run_dir_exactly_one_wins_twenty_times_out_of_twenty(tmp_path):
    """Each winner holds the lock until its rival has exited, so that the race is decided by the lock
    alone (not by timing); without the lock both would hold on and the test would fail."""
    start = time.time() + 1.5  # (most) children are started and have imported before the race begins
    pairs = [[_child(tmp_path / f"run{i}", start, 60.0) for _ in range(2)] for i in range(20)]
    for i, pair in enumerate(pairs):
        _first_exit(pair, timeout=60)
        (tmp_path / f"run{i}" / "release").touch()
        codes = sorted(p.wait(timeout=60) for p in pair)
        assert codes == [0, 2], (i, [p.stderr.read() for p in pair])
        loser = next(p for p in pair if p.returncode == 2)
        winner = next(p for p in pair if p.returncode == 0)
        assert f"is in use by pid {winner.pid} on host" in loser.stderr.read()


def test_a_holder_killed_with_sigkill_leaves_no_lock(tmp_path):
    holder = _child(tmp_path, 0, 60)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match=rf"in use by pid {holder.pid} .*wait for it to end, or choose another run_dir"):
        RunLock(tmp_path, "average").acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with RunLock(tmp_path, "train") as lock:  # the next start goes on: flock died with its process
        assert f'"pid": {os.getpid()}' in lock.path.read_text()
