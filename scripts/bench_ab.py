#!/usr/bin/env python3
"""Training-throughput ratio of two git revisions, measured in one run on one machine.

    python scripts/bench_ab.py BASE_REV HEAD_REV [--models bahdanau,baseline] [--precisions fp32,bf16]
                               [--rounds 3] [--steps 8] [--threads 2] [--out bench_ab.json]

Each revision is checked out into a temporary git worktree and timed by its *own*
``scripts/bench.py:train_throughput`` (so each side runs its own training step), in fresh
processes that alternate BASE, HEAD, BASE, HEAD, ... so that drifts of a shared, noisy
machine hit both sides alike.  Prints, per model and precision, the median tokens/s of
each side and the median of the per-round ratios HEAD/BASE: the figure that
docs/performance.md records for each lever.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TIMER = """
import json, sys, torch
sys.path[:0] = [{root!r}, {root!r} + "/scripts"]
torch.set_num_threads({threads})
import bench
from pipeline.config import BatchConfig, ContextType, DataConfig, TokenizerConfig
try:
    from pipeline.data.prepare import prepare  # since the redesign (issue #29)
except ImportError:
    from pipeline.prepare import prepare  # a revision before it
data = prepare(DataConfig(), TokenizerConfig(), BatchConfig())
tok_s, _ = bench.train_throughput(data, ContextType.{context}, {bf16}, {steps}, 1)
print(json.dumps(tok_s))
"""


def time_once(root: Path, context: str, bf16: bool, steps: int, threads: int) -> float:
    code = TIMER.format(root=str(root), threads=threads, context=context, bf16=bf16, steps=steps)
    env = {**os.environ, "PYTHONPATH": str(root)}
    # the worktree lives outside the checkout, so point it at this checkout's corpus
    env.setdefault("PIPELINE_MULTI30K_DIR", str(REPO.parent / "shared" / "data" / "multi30k" / "raw"))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: timing {root} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def worktree(rev: str, parent: Path) -> Path:
    path = parent / rev.replace("/", "_")
    git("worktree", "add", "--detach", str(path), rev)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base")
    parser.add_argument("head")
    parser.add_argument("--models", default="bahdanau,baseline")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench_ab.json")
    args = parser.parse_args()
    contexts = {"bahdanau": "attention", "baseline": "fixed"}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {"base": worktree(args.base, Path(tmp)), "head": worktree(args.head, Path(tmp))}
        try:
            for model in args.models.split(","):
                for precision in args.precisions.split(","):
                    runs = {"base": [], "head": []}
                    for _ in range(args.rounds):
                        for side, root in roots.items():
                            runs[side].append(
                                time_once(root, contexts[model], precision == "bf16", args.steps, args.threads)
                            )
                    ratios = [h / b for b, h in zip(runs["base"], runs["head"])]
                    results[f"{model}/{precision}"] = {
                        "base_tokens_per_s": statistics.median(runs["base"]),
                        "head_tokens_per_s": statistics.median(runs["head"]),
                        "ratio": statistics.median(ratios),
                        "ratios": ratios,
                    }
                    r = results[f"{model}/{precision}"]
                    rounds = ", ".join(f"{x:.3f}" for x in ratios)
                    print(
                        f"{model:<9} {precision}  base {r['base_tokens_per_s']:7.0f}  "
                        f"head {r['head_tokens_per_s']:7.0f} tok/s   head/base {r['ratio']:.3f}  (rounds {rounds})",
                        flush=True,
                    )
        finally:
            for root in roots.values():
                git("worktree", "remove", "--force", str(root))
    revs = {"base": git("rev-parse", "--short", args.base), "head": git("rev-parse", "--short", args.head)}
    settings = {"rounds": args.rounds, "steps": args.steps, "threads": args.threads, "max_tokens": 4096}
    report = {"revisions": revs, "settings": settings, "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
