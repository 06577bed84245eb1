"""A seeded fuzz pass over the tokenizer and the translate path (issue #34, item 3), bounded to 10 s.

Random Unicode strings (every plane, control and combining characters, surrogates refused by the
codec), random byte strings and random mixes of line endings go through what ``translate`` does
with standard input (:func:`pipeline.decoding.stream.waiting_batches`, then
:func:`pipeline.decoding.translate.translate_lines`): no exception may escape but
:class:`UserError`, and there must be one output line per input line, none holding a line break.
``python scripts/fuzz_translate.py CKPT --seconds 600`` runs the same pass longer.
"""

from __future__ import annotations

import io
import time

import pytest
from fuzzing import fuzz_inputs

from pipeline.config import DecodeConfig
from pipeline.decoding.stream import LINE_BREAKS, one_line, waiting_batches
from pipeline.decoding.translate import load_model, translate_lines
from pipeline.errors import UserError

BUDGET_S = 10.0  # the issue bounds CI's fuzz pass to 30 s; scripts/fuzz_translate.py runs it longer


@pytest.mark.slow
def test_no_input_breaks_the_line_count_or_raises_anything_but_a_user_error(trained):
    restored = load_model(str(trained["ckpt"]), "cpu", 1)
    cfg = DecodeConfig(max_len=20, batch_size=64)
    deadline, tried = time.monotonic() + BUDGET_S, 0
    for data in fuzz_inputs(seed=20261208):
        if time.monotonic() > deadline:
            break
        expected = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        lines = [line for batch in waiting_batches(io.BytesIO(data), max_lines=64) for line in batch]
        assert len(lines) == expected
        try:
            out = translate_lines(restored, lines, cfg).texts
        except UserError:
            continue
        written = "".join(f"{one_line(t)}\n" for t in out)
        assert written.count("\n") == expected and not any(
            c in t for t in map(one_line, out) for c in map(chr, LINE_BREAKS)
        )
        tried += 1
    assert tried >= 30, f"only {tried} inputs in {BUDGET_S} s"
