"""Plain or gzipped text files, one sentence per line, read with every problem a one-line
:class:`UserError` naming the file and line: a missing file, a truncated gzip stream, NUL
bytes, invalid UTF-8, a line too long to be a sentence, and parallel files of other lengths.

Kept apart from :mod:`pipeline.data.corpus` so that commands reading a text file
(``translate``, ``evaluate``, ``report``) do not import ``datasets`` (about 0.6 s).
"""

from __future__ import annotations

import gzip
import itertools
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import UserError


def read_parallel(src_path: str, tgt_path: str, max_line_bytes: int, identity: str = "") -> Iterator[dict]:
    """Yield ``{"src", "tgt"}`` pairs, validating both files line by line."""
    with _open(src_path) as f_src, _open(tgt_path) as f_tgt:
        fs, ft = _lines(f_src, src_path), _lines(f_tgt, tgt_path)
        n = rest_s = rest_t = 0
        # zip_longest, not zip: zip() silently drops the extra line it has already read
        # from the source file when the target file ends first.
        for a, b in itertools.zip_longest(fs, ft):
            if a is None or b is None:
                rest_s = (a is not None) + sum(1 for _ in fs)
                rest_t = (b is not None) + sum(1 for _ in ft)
                break
            n += 1
            yield {
                "src": _check_line(a, src_path, n, max_line_bytes),
                "tgt": _check_line(b, tgt_path, n, max_line_bytes),
            }
    if rest_s or rest_t:
        raise UserError(
            f"line counts differ: {src_path} has {n + rest_s} lines, {tgt_path} has {n + rest_t}; "
            "the files must be line-aligned translations"
        )
    if n == 0:
        raise UserError(f"{src_path} and {tgt_path} are empty; give files with one sentence per line")


def _open(path: str):
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{path} is a directory; give a file with one sentence per line")
    if p.is_symlink() and not p.exists():
        raise UserError(f"{path} is a dangling symbolic link (to {os.readlink(p)}); give an existing file")
    if not p.is_file():
        raise UserError(f"missing file {path}")
    raw = gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")
    return raw


def _lines(f, path: str) -> Iterator[bytes]:
    """The raw lines of ``f``; a truncated or corrupt (gzip) file is a UserError naming it."""
    n = 0
    try:
        for raw in f:
            n += 1
            yield raw
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path}:{n + 1}: cannot read the file ({err}); it is truncated or corrupt") from None


def _check_line(raw: bytes, path: str, lineno: int, max_line_bytes: int) -> str:
    if len(raw) > max_line_bytes:
        raise UserError(
            f"{path}:{lineno}: line of {len(raw)} bytes exceeds data.max_line_bytes={max_line_bytes}; "
            "the file is probably not one sentence per line (or raise data.max_line_bytes)"
        )
    if b"\x00" in raw:
        raise UserError(f"{path}:{lineno}: NUL byte in text; the file is binary or corrupt")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}:{lineno}: invalid UTF-8 at byte {err.start}; re-encode the file as UTF-8") from None
    return text.rstrip("\r\n")


def read_lines(path: str | Path, max_line_bytes: int = 100_000) -> list[str]:
    """A validated list of lines of one plain or gzipped text file (for evaluate/translate).

    Lines are split on ``\n`` (as ``wc -l`` counts them); a CRLF ending and a UTF-8 byte-order
    mark at the start are dropped.  A carriage return inside a line is refused: it means a file
    with old-Mac CR line endings, which would otherwise be read as one long line."""
    lines = []
    with _open(str(path)) as f:
        for i, raw in enumerate(_lines(f, str(path)), start=1):
            line = _check_line(raw, str(path), i, max_line_bytes)
            if "\r" in line:
                raise UserError(
                    f"{path}:{i}: carriage return inside the line (a file with CR line endings?); convert them "
                    f"to newlines, e.g. tr '\\r' '\\n' < {path} > fixed.txt"
                )
            lines.append(line.removeprefix("\ufeff") if i == 1 else line)
    return lines
