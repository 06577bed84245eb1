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
Decoding (validation) allocates differently shaped blocks that do not fit those free chunks
and would add its own peak on top; :func:`release_free_memory` hands the free heap back
first (2,068 -> ~1,550 MB peak for training then decoding, docs/performance.md).

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


def _glibc_function(name: str):
    """``name`` from the C library when it is glibc's, else None (musl, macOS: nothing to tune)."""
    lib = ctypes.util.find_library("c")
    if lib is None:
        return None
    try:
        return getattr(ctypes.CDLL(lib), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Make glibc serve and keep large blocks on the heap; True when it took effect."""
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MAX_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, _MAX_THRESHOLD) == 1
    if not ok:
        log.warning("mallopt refused the thresholds; large tensors are mapped afresh at every step")
    return ok


def release_free_memory() -> bool:
    """Hand the heap's free memory back to the system (glibc ``malloc_trim``); True when it did.

    Called before a phase that allocates differently, such as validation's decoding, so that
    its memory does not come on top of the training steps' kept free blocks.  The next
    training step faults its buffers in once more (one step's worth, ~0.1 s).
    """
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim(0) == 1
