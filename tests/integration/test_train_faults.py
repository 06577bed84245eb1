"""Faults during training: SIGTERM saves and exits 0; a corrupt newest checkpoint is skipped on resume."""

from __future__ import annotations

import dataclasses
import errno
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from tinydata import REPO, tiny_train_config, write_slice

import pipeline.training.checkpoint as checkpoint_module
from pipeline.errors import UserError
from pipeline.training.checkpoint import load_checkpoint, step_path
from pipeline.training.trainer import train


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("m30k"))


@pytest.mark.slow
def test_sigterm_saves_at_the_next_step_and_exits_0(tmp_path, slice_dir):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from pathlib import Path
        from tinydata import tiny_train_config
        from pipeline.training.trainer import train
        train(tiny_train_config(Path({str(tmp_path)!r}), Path({str(slice_dir)!r}), max_steps=100000,
                                eval_every=1000, log_every=1))
        """
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"]
    assert saved >= 3
    assert f"SIGTERM received: checkpoint saved at step {saved}; run the same command again to resume" in out.decode()
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert max(logged) == saved


@pytest.mark.slow
def test_resume_skips_a_corrupt_newest_checkpoint_and_still_ends_bit_identical(tmp_path, slice_dir, capsys):
    straight = tiny_train_config(tmp_path / "a", slice_dir, max_steps=8, eval_every=100)
    train(straight)
    cfg = tiny_train_config(tmp_path / "b", slice_dir, max_steps=6, eval_every=100, checkpoint_every=1)
    train(cfg)
    ckpts = tmp_path / "b" / "run" / "checkpoints"
    newest = step_path(ckpts, 6)
    data = newest.read_bytes()
    (ckpts / "last.pt").unlink()  # last.pt is a hard link to the newest step file: damage both
    newest.write_bytes(data[: len(data) // 2])
    (ckpts / "last.pt").write_bytes(data[: len(data) // 3] + b"garbage")
    capsys.readouterr()
    train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=8)))
    out = capsys.readouterr().out
    assert "warning: skipping checkpoint" in out and "resuming from" in out and "at step 5" in out
    a = load_checkpoint(tmp_path / "a" / "run" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(ckpts / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _poison(monkeypatch, bad_steps: set[int]) -> None:
    """Make the loss non-finite at the given (1-based) update numbers."""
    from pipeline.training.trainer import Trainer

    original = Trainer._loss_sum

    def loss_sum(self, batch, guide):
        value, guided = original(self, batch, guide)
        return (value * float("nan") if self.progress.step + 1 in bad_steps else value), guided

    monkeypatch.setattr(Trainer, "_loss_sum", loss_sum)


@pytest.mark.slow
def test_non_finite_steps_are_skipped_counted_and_never_reach_the_weights(tmp_path, slice_dir, monkeypatch):
    _poison(monkeypatch, {3, 4})
    summary = train(tiny_train_config(tmp_path, slice_dir, max_steps=6, eval_every=3, log_every=1))
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert ckpt["progress"]["skipped_steps"] == 2 and summary["step"] == 6
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in logged if r["kind"] == "train"][-1] == 2


@pytest.mark.slow
def test_too_many_bad_steps_in_a_row_abort_with_a_clear_message(tmp_path, slice_dir, monkeypatch):
    from pipeline.errors import UserError

    _poison(monkeypatch, set(range(2, 100)))
    cfg = tiny_train_config(tmp_path, slice_dir, max_steps=20, eval_every=100, max_bad_steps=3)
    with pytest.raises(UserError, match=r"3 non-finite losses/gradients in a row .* train.max_bad_steps=3"):
        train(cfg)


@pytest.mark.slow
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint_and_stops_with_one_line(
    tmp_path, slice_dir, monkeypatch
):
    """Issue #34 item 4: the save at step 6 fails half-written with ENOSPC."""
    real_open = open

    class HalfThenFull:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def full_disk_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return HalfThenFull(f) if "step-00000006" in str(path) and "w" in mode else f

    monkeypatch.setattr(checkpoint_module, "open", full_disk_open, raising=False)
    cfg = tiny_train_config(tmp_path, slice_dir, max_steps=9, eval_every=3)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    with pytest.raises(
        UserError,
        match=r"could not write checkpoint .*step-00000006.pt \(No space left on device\); "
        r".*last.pt \(step 3\) is intact; free space",
    ):
        train(cfg)
    assert load_checkpoint(ckpt_dir / "last.pt")["step"] == 3
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.pt", "last.pt", "step-00000003.pt"]  # no torn file
    monkeypatch.undo()  # space again: the same command resumes from step 3
    assert train(cfg)["step"] == 9
