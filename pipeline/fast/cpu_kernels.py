"""The fused CPU kernels of the recurrences and the loss, compiled on first use.

pipeline/fast/kernels/ holds five: additive_attention.cpp computes one step of Bahdanau
attention (eqs. 5-6: scores, masked softmax, context) and its backward pass per sentence,
with nothing of size [B, S, A] written to memory; gru_cell.cpp the element-wise part of one
GRU step (eq. 4: gates and update) and of its backward pass in one call instead of ~6 and
~12 torch ops; smoothed_cross_entropy.cpp the label-smoothed loss of a chunk of logits and
its gradient, in place, one read of each row (pipeline/fast/loss.py); top_log_probs.cpp the
k best next tokens of each row of logits by log-softmax, for greedy and beam search
(pipeline/fast/search.py); dropout.cpp inverted dropout, alone and after the decoder's maxout,
with counter-based random draws on all threads (pipeline/fast/dropout.py); each file says why.
They are built as one extension with ``torch.utils.cpp_extension.load`` (g++ with OpenMP;
about a minute, once per machine: the build is cached under ``TORCH_EXTENSIONS_DIR``, by
default ``~/.cache/torch_extensions``) for this CPU (``-march=native``; the cache name
carries a hash of the CPU's flags, so a home directory shared by different machines keeps
one build per kind of CPU).

They are loaded when a fast implementation that uses them is chosen (pipeline/fast/registry.py)
and handed to it; nothing else calls them.  Where they cannot be built (no compiler) the fast
implementations run the same computation in torch ops, after one warning; ``model.impl=reference``
uses none of this package.  Kernel and torch-op paths agree to float rounding
(tests/unit/fast/); dropout's two paths draw different masks from the same seed, with the same
statistics and the same output and gradient given a mask.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import threading
from pathlib import Path
from types import ModuleType

import torch

from pipeline.runtime.hardware import cpuinfo_lines

log = logging.getLogger(__name__)

KERNELS = Path(__file__).with_name("kernels")
SOURCES = [
    KERNELS / name
    for name in (
        "bindings.cpp",
        "additive_attention.cpp",
        "gru_cell.cpp",
        "smoothed_cross_entropy.cpp",
        "top_log_probs.cpp",
        "dropout.cpp",
    )
]
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]  # -ffast-math: glibc's vectorised expf, tanhf

_module: ModuleType | None = None
_failed = False
_lock = threading.Lock()


def _cpu_tag() -> str:
    """A short hash of this CPU's model and instruction-set flags (the build uses -march=native)."""
    lines = cpuinfo_lines("model name", "flags") or [platform.processor(), platform.machine()]
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()[:8]


def _built_already(name: str) -> bool:
    """Whether the cache holds a build of ``name`` newer than every source: then ``load`` only
    loads it (~0.05 s) and nothing needs saying.  A guess for the log line alone (torch's own
    check, by a hash of the sources and flags, decides): False where the cache cannot be read."""
    from torch.utils import cpp_extension

    try:
        built = Path(cpp_extension._get_build_directory(name, verbose=False)) / f"{name}.so"
        return built.is_file() and built.stat().st_mtime >= max(p.stat().st_mtime for p in SOURCES)
    except (AttributeError, OSError):  # a torch without that helper, an unreadable cache
        return False


def _build() -> ModuleType:
    from torch.utils.cpp_extension import load

    name = f"pipeline_cpu_kernels_{_cpu_tag()}"
    if not _built_already(name):
        log.info("fused CPU kernels %s: compiling for this CPU (once per machine, ~1 min)", name)
    return load(
        name=name,
        sources=[str(p) for p in SOURCES],
        extra_cflags=CFLAGS,
        extra_ldflags=["-fopenmp", "-lmvec"],
        extra_include_paths=[str(KERNELS)],
        verbose=False,
    )


def cpu_kernels(device: torch.device) -> ModuleType | None:
    """The compiled kernels for tensors on ``device``, or None where the torch ops must do
    (not a CPU tensor, or the build failed: warned once).  The build is cached for the process."""
    global _module, _failed
    if device.type != "cpu" or _failed:
        return None
    if _module is None:
        with _lock:
            if _module is None and not _failed:
                try:
                    _module = _build()
                except Exception as err:  # no compiler, no headers, ...: the torch ops still work
                    _failed = True
                    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    log.warning(
                        "could not build the fused CPU kernels (%s); using torch ops, which are slower. "
                        "Install g++ (and ninja), or set model.impl=reference to silence this.",
                        first,
                    )
                    return None
    return _module
