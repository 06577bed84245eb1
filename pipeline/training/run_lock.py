"""One writer per run directory: an exclusive ``flock`` on ``run_dir/.lock``.

Why: two ``train`` commands on one ``run_dir`` (a resumed run and a sweep that reuses its
name) would both write ``checkpoints/last.pt``, ``metrics.jsonl`` and the TensorBoard events
of one run.  ``train`` (rank 0 under torchrun) and ``average`` hold this lock while they
write; a second writer stops at once with one line naming the holder.  Readers (evaluate,
translate, align, report) never take it: every file they read is replaced whole by
``os.replace``, so they never see a half-written one.

The lock is the kernel's ``flock`` on an open file, so it dies with its process: a writer
killed with ``kill -9`` leaves no lock behind, only a stale description in the file, which
the next holder overwrites.  (On a network filesystem without ``flock`` support the lock may
be local to each host.)  The file holds the holder's pid, host, start time and command, only
to name it in the message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from pipeline.errors import UserError

LOCK_NAME = ".lock"


class RunLock:
    """``with RunLock(run_dir, "train"):`` writes to ``run_dir`` with no other writer alive."""

    def __init__(self, run_dir: str | Path, command: str) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.command = command
        self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise a one-line :class:`UserError` naming the process that holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's lifetime
        except OSError as err:
            raise UserError(
                f"run_dir {self.path.parent} is not writable ({err.strerror}); choose another run_dir"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(self.path)
            handle.close()
            raise UserError(
                f"run_dir {self.path.parent} is in use by {holder}; wait for it to end, or choose another run_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        handle.write(json.dumps({**info, "command": f"{self.command}: {' '.join(sys.argv)}"[:300]}) + "\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def describe_holder(path: Path, patience_s: float = 1.0) -> str:
    """``pid 123 on host h since 2026-12-08 10:00:00 (train: ...)``, or what can be said without it.

    The holder writes its description right after it takes the lock; a rival that lost the race by
    a hair waits up to ``patience_s`` for it, so that the message names the holder."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            info = json.loads(path.read_text(encoding="utf-8").strip() or "{}")
        except (OSError, json.JSONDecodeError):
            info = {}
        if info.get("pid") or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if not info.get("pid"):
        return "another process (it has not written its name yet)"
    where = f"pid {info['pid']} on host {info.get('host', '?')} since {info.get('started', '?')}"
    return f"{where} ({info.get('command', '?')})"
