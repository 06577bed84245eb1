"""Seeded random inputs for the fuzz pass (tests/integration/test_fuzz_translate.py, scripts/fuzz_translate.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator

ENDINGS = [b"\n", b"\r\n", b"\r", b"", b"\n\n", b"\x85", "\u2028".encode(), b"\x0b", b"\x0c"]
# code points a user's text may hold: ASCII, Latin, scripts, symbols, emoji, combining marks, controls,
# private use, the last planes
RANGES = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x6FF), (0x900, 0x97F), (0x3040, 0x30FF), (0x4E00, 0x4FFF),
          (0xAC00, 0xAD00), (0x1F300, 0x1FAFF), (0x300, 0x36F), (0x0, 0x1F), (0xE000, 0xE0FF), (0x10000, 0x10FFF),
          (0xFFF0, 0xFFFF)]  # fmt: skip


def random_text(rng: random.Random, max_chars: int = 60) -> str:
    out = []
    for _ in range(rng.randint(0, max_chars)):
        lo, hi = rng.choice(RANGES)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def fuzz_inputs(seed: int) -> Iterator[bytes]:
    """An endless stream of inputs: UTF-8 text with mixed line endings, raw bytes, and both spliced."""
    rng = random.Random(seed)
    while True:
        kind = rng.randrange(3)
        if kind == 0:
            parts = [
                random_text(rng).encode("utf-8", "surrogatepass") + rng.choice(ENDINGS)
                for _ in range(rng.randint(1, 8))
            ]
            yield b"".join(parts)
        elif kind == 1:
            yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        else:
            text = random_text(rng).encode("utf-8")
            cut = rng.randint(0, len(text))
            yield text[:cut] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + b"\n" + text[cut:]
