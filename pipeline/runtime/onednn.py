"""The size of oneDNN's cache of compiled GEMM kernels (bf16 GEMMs on the CPU).

Under bf16 autocast torch runs CPU GEMMs through oneDNN, which JIT-compiles a kernel for
every new GEMM shape: 1-11 ms each on this machine (a [227, 512] x [512, 2048] GEMM: 6-7 ms
the first time, 0.7 ms after).  A Multi30k epoch at 4096 tokens has ~126 distinct batch
shapes (the same every epoch: batches are cut from length-sorted buckets) and each brings
~20-35 GEMM shapes of its own (rows = B, S*B, T*B, the loss's last chunk), so a step met for
the first time pays 80-270 ms of compilation.  oneDNN keeps 1,024 compiled kernels by
default, fewer than an epoch needs; as batches come back in a cycle, the least recently used
kernel is always the one evicted, so every epoch recompiles all of them.  A larger cache
makes every epoch after the first find its kernels compiled.

oneDNN reads ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` when it first creates a kernel, so this must
run before the process's first bf16 GEMM; a value already in the environment wins.
"""

from __future__ import annotations

import os

ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def set_primitive_cache_capacity(entries: int) -> None:
    """Let oneDNN keep ``entries`` compiled kernels (unless the environment already sets it)."""
    os.environ.setdefault(ENV, str(int(entries)))
