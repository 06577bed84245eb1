"""Streaming input: lines split as wc -l counts them, decoded whatever the bytes, batched as they arrive."""

from __future__ import annotations

import io
import os
import threading
import time

from pipeline.decoding.stream import decode_line, one_line, waiting_batches


def test_every_byte_string_is_one_line_of_text():
    assert decode_line(b"\xef\xbb\xbfein Hund\r\n", first=True) == "ein Hund"  # BOM and CRLF dropped
    assert decode_line(b"\xef\xbb\xbfzwei\n", first=False) == "\ufeffzwei"  # a BOM only starts a file
    assert decode_line(b"caf\xe9 au lait", first=False) == "caf\ufffd au lait"  # Latin-1: replaced, not fatal
    assert decode_line(b"a\rb\n", first=False) == "a\rb"  # a lone CR is not a line end ...
    assert one_line("a\rb\u2028c\x85d\ne") == "a b c d e"  # ... and never reaches the output as one


def test_a_piped_file_comes_in_full_batches_in_order():
    data = b"".join(f"line {i}\n".encode() for i in range(2500)) + b"no newline at the end"
    batches = list(waiting_batches(io.BytesIO(data), max_lines=1000))
    assert [line for b in batches for line in b] == [f"line {i}" for i in range(2500)] + ["no newline at the end"]
    assert max(len(b) for b in batches) == 1000


def test_lines_typed_one_at_a_time_are_each_answered_before_the_next_arrives():
    read_end, write_end = os.pipe()
    got: list[tuple[float, list[str]]] = []

    def type_slowly() -> None:
        with os.fdopen(write_end, "wb", buffering=0) as w:
            for word in (b"eins\n", b"\n", b"drei\n"):
                w.write(word)
                time.sleep(0.6)

    threading.Thread(target=type_slowly).start()
    start = time.monotonic()
    with os.fdopen(read_end, "rb", buffering=0) as r:
        for batch in waiting_batches(r, max_lines=100):
            got.append((time.monotonic() - start, batch))
    assert [b for _, b in got] == [["eins"], [""], ["drei"]]
    assert got[0][0] < 0.5  # the first line is out before the second is typed (at 0.6 s)
