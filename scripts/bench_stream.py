"""Latency of streaming translate on a warm process: one line in, its translation out.

    python scripts/bench_stream.py CHECKPOINT [--lines 50] [--words 15] [--threads 2] [--decode greedy]

Starts ``python -m pipeline.translate checkpoint=CHECKPOINT`` once, waits for the first answer (the
model loaded and warm), then writes test2016 source sentences of about ``--words`` words one at a
time, each only after the previous answer came back, and prints the p50/p90/max of the time from
writing a line to reading its translation (issue #33's target: p50 <= 50 ms at 15 words, greedy),
then the throughput of the same process when the whole set is piped at once.  Prints the CPU beside
the figures: absolute times mean nothing without it.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.runtime.hardware import cpu_description  # noqa: E402

TEST_SRC = REPO.parent / "shared" / "data" / "multi30k" / "raw" / "test_2016_flickr.de.gz"


def sentences(words: int, n: int) -> list[str]:
    """``n`` test sentences of ``words`` whitespace words (or the nearest lengths there are)."""
    with gzip.open(TEST_SRC, "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    ranked = sorted(lines, key=lambda s: (abs(len(s.split()) - words), lines.index(s)))
    return ranked[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--lines", type=int, default=50)
    ap.add_argument("--words", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode", default="greedy", choices=["greedy", "beam"])
    args = ap.parse_args()
    cmd = [
        sys.executable,
        "-m",
        "pipeline.translate",
        f"checkpoint={args.checkpoint}",
        f"threads={args.threads}",
        f"decode={args.decode}",
        "input=-",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None

    def ask(line: str) -> float:
        t0 = time.perf_counter()
        proc.stdin.write((line + "\n").encode())
        proc.stdin.flush()
        proc.stdout.readline()
        return time.perf_counter() - t0

    test = sentences(args.words, args.lines)
    start = ask(test[0])  # loads the model: the cold start
    for line in test[:5]:  # warm-up: kernels, allocator
        ask(line)
    latencies = sorted(ask(line) * 1000 for line in test)
    mean_words = statistics.fmean(len(s.split()) for s in test)
    t0 = time.perf_counter()
    proc.stdin.write("".join(s + "\n" for s in test * 10).encode())
    proc.stdin.flush()
    for _ in range(len(test) * 10):
        proc.stdout.readline()
    piped = len(test) * 10 / (time.perf_counter() - t0)
    proc.stdin.close()
    proc.wait(timeout=60)
    print(f"CPU: {cpu_description(args.threads)}; decode={args.decode}")
    print(f"cold start (process start to the first answer): {start:.2f} s")
    p50, p90 = statistics.median(latencies), latencies[int(0.9 * (len(latencies) - 1))]
    print(
        f"one line at a time, {len(test)} sentences of {mean_words:.1f} words: "
        f"p50 {p50:.1f} ms, p90 {p90:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    print(f"the same sentences x10 piped at once: {piped:.1f} sentences/s ({1000 / piped:.1f} ms each)")


if __name__ == "__main__":
    main()
