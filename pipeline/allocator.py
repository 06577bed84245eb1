"""Keep freed memory in the process for reuse: glibc's ``mallopt`` on the CPU.

Why: PyTorch's CPU tensors come straight from ``malloc``.  glibc serves blocks above its
mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns them with ``munmap`` on
free, so every training step faults in its large buffers again, page by page: the
[B·T, V] logits and their gradient alone are 2 x 65 MB per step in bf16 (~30,000 page
faults), and a step of the default model faults in ~400 MB in all (measured with
``getrusage``).  In a virtual machine each fault costs microseconds.  Raising the mmap
threshold and the trim threshold makes large blocks come from the heap and stay there
after ``free``, so the next step reuses the same, already-mapped pages; what the
CUDA caching allocator does on the GPU.  The cost: the process keeps its peak heap
(RSS does not fall after a step), which a training process reaches every step anyway.

glibc only (Linux); elsewhere this is a no-op.  Intel's PyTorch CPU tuning guide reaches
the same effect by preloading jemalloc or tcmalloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # malloc.h
_M_MMAP_THRESHOLD = -3
_MAX_THRESHOLD = 1 << 30  # 1 GiB: only larger blocks (none in training) are still mapped afresh


def keep_freed_memory() -> bool:
    """Make glibc serve and keep large blocks on the heap; True when it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MAX_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, _MAX_THRESHOLD) == 1
    if not ok:
        log.warning("mallopt refused the thresholds; large tensors are mapped afresh at every step")
    return ok
