#!/usr/bin/env python3
"""Memory and speed on a corpus larger than this machine would like to hold: prepare, then train.

    python scripts/bench_corpus.py [--pairs 5000000] [--dir /tmp/bench-corpus] [--num-proc 2] [--vocab-size 8000]
                                  [--reuse-cache] [--out bench_corpus.json]

Writes a synthetic parallel corpus of ``--pairs`` train pairs (Zipf-distributed pseudo-words,
5-30 words a sentence; 1,000 val and test pairs) as plain text, kept in ``--dir`` and reused
by later runs with the same ``--pairs``, then runs, each in a fresh process as a user would:

* ``python -m pipeline.prepare data=files ...``: pairs/s (train pairs over wall time, import
  included) and peak RSS;
* ``python -m pipeline.train ... train.max_steps=20``: peak RSS of training on it (default
  model, batches of 4096 tokens).

The data cache and the run folder in ``--dir`` are deleted first, so the first prepare really
builds everything and training starts at step 0; ``--reuse-cache`` keeps the cache (the first
prepare is then a cached one too: quicker, when only training is of interest).

RSS is split as the kernel counts it (/proc/PID/status, sampled with the PSS): RssAnon is the
process's own memory, RssFile the pages of mapped files (shared libraries, memory-mapped Arrow
files) that it has touched, which the kernel can drop and read again.

Targets (issue #9): peak RSS < 3 GB in both; prepare >= 20k pairs/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_corpus(folder: Path, pairs: int, seed: int = 0) -> None:
    """train/val/test.{src,tgt}: random sentences; the target is a fixed word-by-word mapping of the source."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(20_000)])
    mapped = np.array([f"v{i}" for i in rng.permutation(20_000)])
    for split, n in (("train", pairs), ("val", 1000), ("test", 1000)):
        with open(folder / f"{split}.src", "w") as fs, open(folder / f"{split}.tgt", "w") as ft:
            for start in range(0, n, 100_000):
                m = min(100_000, n - start)
                lengths = rng.integers(5, 31, m)
                ids = np.minimum(rng.zipf(1.3, lengths.sum()) - 1, 19_999)
                for row in np.split(ids, np.cumsum(lengths)[:-1]):
                    fs.write(" ".join(words[row]) + "\n")
                    ft.write(" ".join(mapped[row]) + "\n")


def tree_pss_mb(root: int) -> float:
    """Memory of ``root`` and all its descendants now (Linux /proc), in MB: the sum of their PSS.

    ``ru_maxrss`` is the peak of the single largest process; with ``data.num_proc`` encoding
    workers the machine holds more.  Summing RSS would count pages shared after fork and
    memory-mapped Arrow files once per process; PSS splits each shared page among its users.
    """
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == pid]
        tree.update(kids)
        frontier.extend(kids)
    kb = 0
    for pid in tree:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        kb += sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return kb / 1024


def rss_split_mb(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of one process now, in MB (zeros once it has gone)."""
    out = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if key in out:
            out[key] = int(value.split()[0]) / 1024
    return out


@dataclass
class Measured:
    """One command's wall time and memory, in seconds and MB.

    ``rss_mb`` is the exact peak (``ru_maxrss``) of the largest process; the rest is sampled
    every 0.2 s, so a spike shorter than that can be missed: ``pss_tree_mb`` summed over the
    process tree, and the main process's RssAnon and RssFile at its highest sampled RSS.
    """

    seconds: float
    rss_mb: float
    pss_tree_mb: float
    anon_mb: float
    file_mb: float

    def summary(self) -> str:
        return (
            f"peak RSS {self.rss_mb:,.0f} MB (sampled at its peak: anon {self.anon_mb:,.0f} + file-backed "
            f"{self.file_mb:,.0f} MB; PSS of all processes together {self.pss_tree_mb:,.0f} MB)"
        )


def run_measured(cmd: list[str]) -> Measured:
    """Run ``cmd`` in a fresh process and measure it (see :class:`Measured`); exits if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak_tree = 0.0
    at_peak = rss_split_mb(proc.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_tree, at_peak
        while not done.wait(0.2):
            peak_tree = max(peak_tree, tree_pss_mb(proc.pid))
            now = rss_split_mb(proc.pid)
            if now["VmRSS"] > at_peak["VmRSS"]:
                at_peak = now

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read() if proc.stdout else ""
    done.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:4])} failed:\n{out[-3000:]}")
    return Measured(time.perf_counter() - t0, usage.ru_maxrss / 1024, peak_tree, at_peak["RssAnon"], at_peak["RssFile"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-corpus"))
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--reuse-cache", action="store_true", help="keep the data cache of an earlier run")
    parser.add_argument("--out", default="bench_corpus.json")
    args = parser.parse_args()
    corpus = args.dir / f"corpus-{args.pairs}"
    shutil.rmtree(args.dir / "run", ignore_errors=True)  # else training would resume a finished run and do nothing
    if not args.reuse_cache:
        shutil.rmtree(args.dir / "cache", ignore_errors=True)
    if not (corpus / "test.tgt").exists():
        t0 = time.perf_counter()
        write_corpus(corpus, args.pairs)
        print(f"wrote {args.pairs:,} pairs to {corpus} in {time.perf_counter() - t0:.0f}s", flush=True)
    data = [
        "data=files",
        "data.src_lang=src",
        "data.tgt_lang=tgt",
        *(f"data.files.{split}={corpus / split}" for split in ("train", "val", "test")),
        f"data.cache_dir={args.dir / 'cache'}",
        f"data.num_proc={args.num_proc}",
        f"tokenizer.vocab_size={args.vocab_size}",
    ]
    py = [sys.executable, "-m"]
    first = run_measured([*py, "pipeline.prepare", *data])
    label = "prepare (cache reused)" if args.reuse_cache else "prepare"
    print(f"{label}: {first.seconds:.0f}s, {args.pairs / first.seconds:,.0f} pairs/s, {first.summary()}", flush=True)
    again = run_measured([*py, "pipeline.prepare", *data])
    print(f"prepare again (cached): {again.seconds:.0f}s, {again.summary()}", flush=True)
    train = [*data, f"run_dir={args.dir / 'run'}", "train.max_steps=20", "train.eval_every=1000000"]
    train += ["train.eval_max_sentences=10", "train.progress=false", "train.max_epochs=null"]
    trained = run_measured([*py, "pipeline.train", *train])
    print(f"train 20 steps (prepare cached): {trained.seconds:.0f}s, {trained.summary()}", flush=True)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True)
    result = {
        "commit": commit.stdout.strip() or None,
        "pairs": args.pairs,
        "num_proc": args.num_proc,
        "prepare_cache_reused": args.reuse_cache,
        "prepare_s": first.seconds,
        "prepare_pairs_per_s": args.pairs / first.seconds,
        "prepare_peak_rss_mb": first.rss_mb,
        "prepare_peak_pss_all_processes_mb": first.pss_tree_mb,
        "prepare_rss_anon_at_peak_mb": first.anon_mb,
        "prepare_rss_file_at_peak_mb": first.file_mb,
        "prepare_cached_s": again.seconds,
        "prepare_cached_peak_rss_mb": again.rss_mb,
        "prepare_cached_peak_pss_all_processes_mb": again.pss_tree_mb,
        "prepare_cached_rss_anon_at_peak_mb": again.anon_mb,
        "prepare_cached_rss_file_at_peak_mb": again.file_mb,
        "train_20_steps_s": trained.seconds,
        "train_peak_rss_mb": trained.rss_mb,
        "train_peak_pss_all_processes_mb": trained.pss_tree_mb,
        "train_rss_anon_at_peak_mb": trained.anon_mb,
        "train_rss_file_at_peak_mb": trained.file_mb,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
