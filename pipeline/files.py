"""Result files are written whole or not at all, and read back whole or refused in one line."""

from __future__ import annotations

import json
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


def read_json_object(path: Path, remedy: str, required: tuple[str, ...] = ()) -> dict:
    """The JSON object in ``path`` holding the keys ``required``, else a one-line :class:`UserError`
    naming the file and ``remedy`` (how to write it again: "re-create it: python -m ...").

    A result file may be truncated, replaced or written by an older version; a report over it
    must say which file and what to do, not end in a traceback.
    """
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found; {remedy}") from None
    except OSError as err:
        raise UserError(f"{path} cannot be read ({err.strerror or err}); {remedy}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (byte {err.start}): damaged or replaced? {remedy}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); {remedy}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a JSON {type(data).__name__}, not the object this pipeline writes; {remedy}")
    missing = [k for k in required if k not in data]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)} (another program's file, or an older one?); {remedy}")
    return data
