"""Result files are written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import UserError


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then ``os.replace`` it into place.

    A crash or an error mid-write leaves the previous file (or none), never a torn one.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def writable_folder(path: Path, key: str = "out") -> Path:
    """``path`` as an existing folder this process can write into, else a one-line :class:`UserError`
    naming ``key`` (checked before any work, so that a long command does not fail at its end)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"{key}={path} is not a writable folder ({err.strerror or err}); choose another {key}"
        ) from None
    return path
