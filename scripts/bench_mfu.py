#!/usr/bin/env python3
"""RNNsearch's model FLOPs utilisation against a peak read at the same moment.

    python scripts/bench_mfu.py [--precision fp32|bf16] [--rounds 5] [--steps 8] [--threads 2]

``bench.py`` divides by the highest matmul peak of its whole run, which is the honest ceiling
but mixes machine states: this shared machine's 2048^3 matmul reads anywhere from ~160 to ~330
GFLOP/s in fp32 (700-2,000 in bf16) within an hour.  Here each round reads the peak, times one
run of ``--steps`` training steps (after a warm-up run), and the next round's reading closes it;
a round's MFU is its FLOPs/s over the higher of the two readings around it.  Printed: every
round, then the median round and the MFU against the highest reading of all rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench import matmul_gflops, train_throughput  # noqa: E402

from pipeline.config import BatchConfig, ContextType, DataConfig, TokenizerConfig, TrainConfig  # noqa: E402
from pipeline.data.prepare import prepare  # noqa: E402
from pipeline.runtime.onednn import set_primitive_cache_capacity  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="training steps per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_primitive_cache_capacity(TrainConfig().onednn_cache)  # before the first GEMM, as in training
    bf16 = args.precision == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    data = prepare(DataConfig(), TokenizerConfig(), BatchConfig())

    peaks = [matmul_gflops(dtype)]
    achieved, local = [], []
    for r in range(args.rounds):
        tok_s, flops_per_token = train_throughput(data, ContextType.attention, bf16, args.steps, repeats=1)
        peaks.append(matmul_gflops(dtype))
        achieved.append(tok_s * flops_per_token / 1e9)
        local.append(achieved[-1] / max(peaks[-2], peaks[-1]))
        print(
            f"round {r}: {tok_s:7.0f} tok/s = {achieved[-1]:7.1f} GFLOP/s; peak before {peaks[-2]:7.1f}, "
            f"after {peaks[-1]:7.1f}; MFU {local[-1]:.1%}",
            flush=True,
        )
    print(
        f"{args.precision}: MFU against the readings around each round: median {statistics.median(local):.1%} "
        f"(range {min(local):.1%}-{max(local):.1%}); against the highest reading ({max(peaks):.0f} GFLOP/s) "
        f"{statistics.median(achieved) / max(peaks):.1%}"
    )


if __name__ == "__main__":
    main()
