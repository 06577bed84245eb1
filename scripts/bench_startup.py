#!/usr/bin/env python3
"""Start-up cost of ``translate``: one line from a warm cache, in fresh processes.

    python scripts/bench_startup.py CHECKPOINT [--runs 5] [--impl auto] [--threads 2]

Two measurements, each the median of ``--runs`` fresh processes (the first, which may fill
the kernel and page caches, is run once before and not counted):

* **the command**: wall clock of ``python -m pipeline.translate checkpoint=... input=FILE``
  on a file of one 15-word sentence, as a user runs it;
* **the split**, in a fresh process that does what the command does, phase by phase:
  interpreter and ``import torch``; the command's other imports; loading the C++ kernels
  (``model.impl=auto`` on the CPU; a warm cache only loads the built library); loading the
  checkpoint and building the model; the first sentence (greedy).

The rest of the command's wall clock (Hydra's composition, printing) is the difference.  Figures
are seconds on the machine at hand; the CPU is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SENTENCE = "Ein Mann in einem blauen Hemd steht auf einer Leiter und putzt die Fenster eines Hauses."

SPLIT = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
sys.path.insert(0, {root!r})
import pipeline.cli.translate  # what the command imports: Hydra, the config schema, the library
from pipeline.config import DecodeConfig
from pipeline.decoding.translate import load_model, translate_texts
t2 = time.perf_counter()
from pipeline.fast.cpu_kernels import cpu_kernels
cpu_kernels(torch.device("cpu")) if {impl!r} != "reference" else None
t3 = time.perf_counter()
restored = load_model({checkpoint!r}, "cpu", {threads}, {impl!r})
t4 = time.perf_counter()
translate_texts(restored, [{sentence!r}], DecodeConfig())
t5 = time.perf_counter()
phases = {{"torch": t1 - t0, "imports": t2 - t1, "kernels": t3 - t2, "model": t4 - t3}}
print(json.dumps({{**phases, "first sentence": t5 - t4}}))
"""


def _run(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench_startup: {' '.join(args[:3])} failed:\n{done.stderr.strip()[-2000:]}")
    return wall, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--impl", default="auto", choices=["auto", "reference", "fast"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from pipeline.runtime.hardware import cpu_description

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    checkpoint = str(Path(args.checkpoint).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "one.txt"
        source.write_text(SENTENCE + "\n", encoding="utf-8")
        command = [sys.executable, "-m", "pipeline.translate", f"checkpoint={checkpoint}", f"input={source}"]
        command += [f"impl={args.impl}", f"threads={args.threads}"]
        code = SPLIT.format(
            root=str(REPO), checkpoint=checkpoint, threads=args.threads, impl=args.impl, sentence=SENTENCE
        )
        _run(command, env)  # warm the caches (kernel build, page cache); not counted
        walls, splits = [], []
        for _ in range(args.runs):
            walls.append(_run(command, env)[0])
            splits.append(json.loads(_run([sys.executable, "-c", code], env)[1].strip().splitlines()[-1]))
    print(cpu_description(args.threads))
    print(f"translate of one line, impl={args.impl}, median of {args.runs} fresh processes:")
    print(f"  the command, wall clock: {statistics.median(walls):.2f} s (runs {min(walls):.2f}-{max(walls):.2f})")
    phases = {name: statistics.median(s[name] for s in splits) for name in splits[0]}
    for name, seconds in phases.items():
        print(f"  {name:>15}: {seconds:.3f} s")
    print(f"  {'sum':>15}: {sum(phases.values()):.3f} s")


if __name__ == "__main__":
    main()
