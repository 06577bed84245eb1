"""Run a pipeline command as a user would (a subprocess) and check its one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tinydata import REPO, TINY_OVERRIDES

# the key that sets torch's threads, per command (report, prepare and average do no tensor work)
THREADS_KEY = {"report": None, "prepare": None, "average": None, "train": "train.threads"}


def run(module: str, *args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m pipeline.<module> args`` in the repo, one thread; ``env`` replaces the environment."""
    key = THREADS_KEY.get(module, "threads")
    threads = [f"{key}=1"] if key else []
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.{module}", *args, *threads],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=300,
        env=env,
    )


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def render_in_chromium(page: Path, tmp: Path) -> tuple[str, str]:
    """(DOM after the page's scripts ran, browser log) from headless Chromium; skips without one."""
    return render_in_chromium_url(page.as_uri(), tmp)


def render_in_chromium_url(url: str, tmp: Path) -> tuple[str, str]:
    """:func:`render_in_chromium` of any address (a page served on 127.0.0.1, say)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium); the page was not rendered")
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--virtual-time-budget=3000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout, proc.stderr


# scripts/compare.sh on a tiny slice (tests/integration/test_compare*.py)
TINY = [*TINY_OVERRIDES, "train.max_minutes=null", "decode.max_len=12"]  # quick's 5-minute budget off
GOLD = REPO.parent / "shared" / "data" / "alignment"  # europarl-de-en/ and hansards-en-fr/


def compare(out, data, cache, *options: str, gold: str = str(GOLD)) -> subprocess.CompletedProcess:
    """``scripts/compare.sh quick`` on the slice in ``data`` with a tiny model, into ``out``."""
    return subprocess.run(
        [
            "bash",
            "scripts/compare.sh",
            "quick",
            *options,
            "--gold",
            gold,
            "--out",
            str(out),
            f"data.local_dir={data}",
            f"data.cache_dir={cache}",
            *TINY,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
