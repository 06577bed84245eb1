"""Lines in as they arrive, in batches of what is already waiting.

Why: ``translate`` reading standard input is used two ways.  Piped a whole file, it should
be as fast as batch decoding, which needs many sentences per search; typed into, or fed by
``tail -f``, each line should be answered at once, not when the input ends.  A reader
thread puts every line in a queue as soon as it is read; the decoder takes all the lines
waiting (at least one, at most ``max_lines``), so a fast producer gives full batches and a
slow one gives batches of one.

Lines are split on ``\\n`` bytes only, as ``wc -l`` counts them: one input line, one output
line, whatever the bytes.  A line's ``\\r\\n`` ending and a UTF-8 byte-order mark at the start
are dropped, and bytes that are not UTF-8 become U+FFFD, so no input stops the stream.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import BinaryIO

_END = object()
BOM = "\ufeff"
# characters that str.splitlines() (and so many readers of the output) take as line breaks
LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def decode_line(raw: bytes, first: bool) -> str:
    """One input line as text: its line ending (and a leading BOM) dropped, invalid UTF-8 replaced."""
    text = raw.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
    return text.removeprefix(BOM) if first else text


def one_line(text: str) -> str:
    """``text`` with every character a reader could take for a line break turned into a space."""
    return text.translate(LINE_BREAKS)


def waiting_batches(stream: BinaryIO, max_lines: int) -> Iterator[list[str]]:
    """Batches of the decoded lines of ``stream``, in order: each holds what had arrived when it was cut."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            for i, raw in enumerate(iter(stream.readline, b"")):
                lines.put(decode_line(raw, first=i == 0))
        finally:
            lines.put(_END)

    threading.Thread(target=read, name="stdin-reader", daemon=True).start()
    ended = False
    while not ended:
        batch: list[str] = []
        item = lines.get()  # wait for the first line
        while item is not _END:
            batch.append(item)
            if len(batch) >= max_lines:
                break
            try:
                item = lines.get_nowait()
            except queue.Empty:
                break
        ended = item is _END
        if batch:
            yield batch
