"""kill -9 during training, then the same command again: the finished parameters are bit-identical.

A training subprocess (the library's ``train`` on the tiny slice, checkpointing every step)
is killed with SIGKILL as soon as it has logged a randomly drawn step, up to three times;
each time the same command is started again and resumes from the newest intact checkpoint.
Its final parameters must equal (``torch.equal``) those of a run that was never interrupted.
Bounded: at most 3 kills, each waiting at most 120 s.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from tinydata import REPO, tiny_train_config, write_slice

from pipeline.training.checkpoint import load_checkpoint
from pipeline.training.trainer import train

STEPS = 24


def _script(tmp, data) -> str:
    return textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from pathlib import Path
        from tinydata import tiny_train_config
        from pipeline.training.trainer import train
        cfg = tiny_train_config(Path({str(tmp)!r}), Path({str(data)!r}), max_steps={STEPS}, eval_every=8,
                                log_every=1, checkpoint_every=1)
        train(cfg)
        """
    )


def _logged_step(metrics) -> int:
    if not metrics.exists():
        return 0
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line.endswith("}")]
    return max(steps, default=0)


def _run_and_kill_at(script: str, metrics, step: int) -> bool:
    """Start the run; SIGKILL it once ``step`` is logged. False if it finished before that."""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if _logged_step(metrics) >= step:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
        pytest.fail(f"training did not reach step {step} within 120 s")
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    return False


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    data = write_slice(tmp_path / "m30k")
    train(tiny_train_config(tmp_path / "straight", data, max_steps=STEPS, eval_every=8, log_every=1))
    reference = load_checkpoint(tmp_path / "straight" / "run" / "checkpoints" / "last.pt")["model"]

    script = _script(tmp_path / "killed", data)
    metrics = tmp_path / "killed" / "run" / "metrics.jsonl"
    kill_steps = sorted(random.Random().sample(range(2, STEPS - 1), 3))
    kills = sum(_run_and_kill_at(script, metrics, step) for step in kill_steps)
    finish = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr[-2000:]

    assert kills >= 1, f"no kill landed (kill steps {kill_steps})"
    final = load_checkpoint(tmp_path / "killed" / "run" / "checkpoints" / "last.pt")
    assert final["step"] == STEPS
    for key, value in reference.items():
        assert torch.equal(value, final["model"][key]), f"{key} differs after kills at steps {kill_steps}"
