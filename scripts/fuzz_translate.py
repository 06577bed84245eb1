"""The fuzz pass of tests/integration/test_fuzz_translate.py, for longer (issue #34, item 3).

    python scripts/fuzz_translate.py CHECKPOINT [--seconds 600] [--seed 1]

Feeds seeded random Unicode strings, byte strings and line-ending mixes (tests/fuzzing.py) through
translate's standard-input path and checks, for each, that nothing but a UserError is raised and
that the output has one line per input line. Prints the inputs tried and any failure's input (repr).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fuzzing import fuzz_inputs  # noqa: E402

from pipeline.config import DecodeConfig  # noqa: E402
from pipeline.decoding.stream import one_line, waiting_batches  # noqa: E402
from pipeline.decoding.translate import load_model, translate_lines  # noqa: E402
from pipeline.errors import UserError  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    restored = load_model(args.checkpoint, "cpu", 2)
    cfg = DecodeConfig(max_len=40, batch_size=64)
    deadline, tried, refused = time.monotonic() + args.seconds, 0, 0
    for data in fuzz_inputs(args.seed):
        if time.monotonic() > deadline:
            break
        expected = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        lines = [line for batch in waiting_batches(io.BytesIO(data), max_lines=64) for line in batch]
        try:
            out = translate_lines(restored, lines, cfg).texts
        except UserError:
            refused += 1
            continue
        except Exception as err:  # noqa: BLE001 - what the pass is looking for
            print(f"FAILED on {data!r}: {type(err).__name__}: {err}")
            return 1
        got = "".join(f"{one_line(t)}\n" for t in out).count("\n")
        if len(lines) != expected or got != expected:
            print(f"FAILED on {data!r}: {expected} lines in, {len(lines)} read, {got} out")
            return 1
        tried += 1
    print(f"{tried} inputs translated, {refused} refused with a UserError, 0 failures (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
