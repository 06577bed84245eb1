"""Run a pipeline command as a user would (a subprocess) and check its one-line errors."""

from __future__ import annotations

import subprocess
import sys

from tinydata import REPO


def run(module: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.{module}", *args, "threads=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=300,
    )


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
