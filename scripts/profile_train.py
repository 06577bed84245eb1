#!/usr/bin/env python3
"""Where a training step spends its time: a native sampling profile, grouped by kind of work.

    python scripts/profile_train.py [--precision fp32|bf16] [--steps 8] [--repeats 3] [--threads 2]
                                    [--context attention|fixed] [--unseen] [--top 25] [--rate 250]
                                    [--raw RAW] | --summarise RAW

The question it answers is what stands between the MFU that ``bench.py`` prints and 100%: the
matrix products themselves at the model's shapes, or everything around them.  ``torch.profiler``
cannot say, because the fp32 recurrence multiplies through MKL's packed GEMM called by ctypes
(pipeline/fast/packed_gemm.py), which it never sees.  So this script runs RNNsearch's training
steps (``bench.train_throughput``: the default model, real Multi30k batches, the trainer's
settings) under ``py-spy record --native`` and sorts every sample's innermost native frame into:

* ``GEMM``: MKL and oneDNN matrix-product kernels (sgemm/brgemm/JIT code, packing included);
* ``GEMM-adjacent`` : oneDNN's kernel compilation and primitive creation (bf16, new shapes);
* ``fused kernels``: this project's C++ kernels (pipeline/fast/kernels/);
* ``OpenMP barriers``: the main thread inside libgomp, that is waiting for the other threads at the
  end of a parallel region (uneven shares of a small product, or a serial stretch between two);
* ``elementwise/reductions``: ATen's CPU kernels (the GRU gates, tanh, softmax, Adam, copies);
* ``allocator/libc``: malloc/free/memset/memcpy and the rest of the C library;
* ``Python``: the interpreter and torch's Python-to-C++ dispatch;
* ``other``: everything else (named in the top list).

Only samples taken inside the timed steps count (their stack holds ``run`` of train_throughput
after the warm-up), so data loading and start-up are not in the shares.  Needs ``py-spy`` (``pip
install py-spy``) and the right to ptrace a child, which root in a container has.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CATEGORIES = [  # (name, pattern on the innermost native frame), first match wins
    ("GEMM-adjacent", re.compile(r"dnnl.*(jit_generator|create|init|generate|primitive_desc|cache)|xbyak", re.I)),
    ("fused kernels", re.compile(r"pipeline_kernels|pipeline_cpu_kernels", re.I)),
    ("GEMM", re.compile(r"mkl_blas|sgemm|gemm|brgemm|jit_avx|jit_uni|jit_brg|amx|mkl_|dnnl", re.I)),
    ("OpenMP barriers", re.compile(r"libgomp|libiomp|kmp_|omp_", re.I)),
    ("allocator/libc", re.compile(r"malloc|free|memset|memcpy|memmove|mmap|munmap|madvise|_int_|libc\.so", re.I)),
    ("elementwise/reductions", re.compile(r"at::native|at::vec|cpu_kernel|vectorized|Reduce|binary_kernel", re.I)),
    ("Python", re.compile(r"\.py:|_PyEval|PyObject|_Py|python3|torch::autograd::python|pybind|THP", re.I)),
]


def category(frame: str) -> str:
    for name, pattern in CATEGORIES:
        if pattern.search(frame):
            return name
    return "other"


def child(args: argparse.Namespace) -> None:
    """The profiled process: one warm-up run, then ``--repeats`` timed runs of the same steps
    (or, with ``--unseen``, one run over batches never seen before)."""
    import torch

    sys.path.insert(0, str(REPO / "scripts"))
    sys.path.insert(0, str(REPO))
    from bench import train_throughput

    from pipeline.config import BatchConfig, ContextType, DataConfig, TokenizerConfig
    from pipeline.data.prepare import prepare

    torch.set_num_threads(args.threads)
    data = prepare(DataConfig(), TokenizerConfig(), BatchConfig())
    context = ContextType(args.context)
    tok_s, _ = train_throughput(
        data,
        context,
        args.precision == "bf16",
        args.steps,
        args.repeats,
        unseen_from=args.steps if args.unseen else None,
    )
    print(f"{tok_s:.0f} target tokens/s while profiled (sampling slows it a little)", flush=True)


def summarise(raw: Path, top: int) -> None:
    """Shares of the samples taken inside the timed steps, by category and by innermost frame."""
    by_category: Counter = Counter()
    by_frame: Counter = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "train_throughput" not in stack or "run (" not in stack:
            continue
        frames = stack.split(";")
        native = [f for f in frames if ".py:" not in f] or frames
        leaf = native[-1]
        n = int(count)
        total += n
        by_category[category(leaf)] += n
        by_frame[leaf[:110]] += n
    if not total:
        sys.exit(f"profile_train: no samples inside the timed steps in {raw}; is py-spy allowed to ptrace?")
    print(f"\n{total} samples inside the timed training steps")
    for name, n in by_category.most_common():
        print(f"  {name:24s} {n / total:6.1%}")
    print(f"\ntop {top} innermost frames:")
    for frame, n in by_frame.most_common(top):
        print(f"  {n / total:6.1%}  [{category(frame)}] {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--context", choices=["attention", "fixed"], default="attention")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unseen", action="store_true", help="batches never seen before (the first epoch)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples here (summarise again with --summarise)")
    parser.add_argument("--summarise", type=Path, metavar="RAW", help="only summarise a kept raw file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.summarise:
        summarise(args.summarise, args.top)
        return
    forwarded = ["--precision", args.precision, "--context", args.context, "--steps", str(args.steps)]
    forwarded += ["--repeats", str(args.repeats), "--threads", str(args.threads)] + ["--unseen"] * args.unseen
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or Path(tmp) / "profile.txt"
        cmd = ["py-spy", "record", "--native", "--format", "raw", "--rate", str(args.rate), "-o", str(raw), "--"]
        cmd += [sys.executable, __file__, "--child", *forwarded]
        try:
            subprocess.run(cmd, check=True)
        except FileNotFoundError:
            sys.exit("profile_train: py-spy is not installed; run `pip install py-spy`")
        except subprocess.CalledProcessError as err:
            sys.exit(f"profile_train: py-spy failed (exit {err.returncode}); see its message above")
        summarise(raw, args.top)


if __name__ == "__main__":
    main()
