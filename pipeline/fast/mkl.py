"""MKL's CBLAS functions from the library torch has loaded.

torch's CPU builds for x86-64 link MKL into libtorch_cpu and export its symbols, so the GEMM
variants torch does not call (bf16 inputs with float32 accumulation, packed weights) can be
reached through ctypes without another dependency.  Callers self-test what they get (an ILP64
MKL, whose integers are 64-bit, would compute garbage with these 32-bit signatures) and fall
back to torch ops where a function is missing or fails.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)

ROW_MAJOR, NO_TRANS, TRANS, PACKED, B_MATRIX = 101, 111, 112, 151, 162  # CBLAS / MKL enums
INT32_MAX = 2**31 - 1


def mkl_function(name: str, restype, argtypes: list):
    """The function ``name`` of torch's libtorch_cpu with the given C signature, or None."""
    libs = sorted((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*"))
    try:
        fn = getattr(ctypes.CDLL(str(libs[0])), name)
    except (IndexError, OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = restype, argtypes
    return fn


def self_tested(functions: tuple, self_test: Callable[..., bool], fallback: str) -> tuple | None:
    """``functions`` when every one was found and ``self_test(*functions)`` passes, else None;
    a failed test is logged, naming the ``fallback`` the caller takes instead."""
    if any(fn is None for fn in functions):
        return None
    if not self_test(*functions):  # e.g. an ILP64 MKL, whose integers are 64-bit
        names = ", ".join(fn.__name__ for fn in functions)
        log.warning("MKL's %s failed its self-test; %s", names, fallback)
        return None
    return functions
