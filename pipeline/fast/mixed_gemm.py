"""``acc += aᵀ b``, ``acc += a b`` and ``aᵀ b``: bf16 inputs accumulated straight into float32, on the CPU.

Why: the fused loss (pipeline/fast/loss.py) adds each chunk's output-layer weight gradient
gᵀ x [V, R] into a float32 accumulator.  In torch ops that is a bf16 GEMM, then a cast of its
[V, R] result to float32, then an add: three passes over an 8 MB matrix per chunk, ~15
chunks a step.  MKL's ``cblas_gemm_bf16bf16f32`` multiplies bf16 inputs with float32
accumulation and adds into a float32 C in one call (1.65 vs 2.43 ms per chunk), and its sum
is no longer rounded to bf16 once per chunk.  The bf16 recurrences' backward pass
(pipeline/fast/recurrence.py) carries the state's gradient ∂s in float32 and adds each step's
∂gh W_hh into it with :func:`add_product`: for the encoder's [B, 768] x [768, 256] that is
~0.15 ms against oneDNN's ~0.30 ms for the bf16 ``addmm``, ~90 times a step; and it computes
the recurrences' weight and bias gradients with :func:`weight_grad` and :func:`bias_grad` (on
:func:`transposed_product`), as pipeline/fast/linear.py does for the linear layers'.  torch's CPU builds for
x86-64 link MKL into libtorch_cpu and export that symbol; where it is missing (other builds,
other platforms), fails its one self-test, or runs slower than torch ops on this CPU (timed once,
:func:`_probe_times`: MKL has no fast bf16 kernel for AMD's Zen 5), these functions run torch
ops instead and :func:`mkl_available` is False, so linear.py and recurrence.py keep autocast's
bf16 paths.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time

import torch

from pipeline.fast.mkl import INT32_MAX, NO_TRANS, ROW_MAJOR, TRANS, mkl_function, self_tested

log = logging.getLogger(__name__)


@functools.cache
def _mkl_self_tested():
    """MKL's ``cblas_gemm_bf16bf16f32`` from the library torch has loaded, where it is there and
    passes its self-test, else None."""
    fn = mkl_function(
        "cblas_gemm_bf16bf16f32", None, [ctypes.c_int] * 6 + [
            ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
            ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
        ],
    )  # fmt: skip
    found = self_tested((fn,), _self_test, "using torch ops for bf16 weight gradients")
    return found and found[0]


@functools.cache
def _mkl_gemm_bf16bf16f32():
    """:func:`_mkl_self_tested`'s function where it is faster than torch ops on this CPU, else None."""
    fn = _mkl_self_tested()
    if fn is None:
        return None
    t_mkl, t_torch = _probe_times(fn)
    faster = t_mkl <= MKL_TOLERANCE * t_torch
    log.info(
        "bf16 GEMM with float32 accumulation: MKL %.2f ms, torch ops %.2f ms at [%d, %d]ᵀ x [%d, %d]; using %s",
        t_mkl * 1e3, t_torch * 1e3, *PROBE_KMN[:2], *PROBE_KMN[::2], "MKL" if faster else "torch ops",
    )  # fmt: skip
    return fn if faster else None


MKL_TOLERANCE = 1.1  # MKL's unrounded float32 sums are worth up to 10% of speed
PROBE_KMN = (4096, 1024, 512)  # a weight gradient over a 4096-token batch: 4.3 GFLOP, 5-25 ms a call


def _probe_times(fn, repeats: int = 3) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of ``acc += aᵀ b`` by MKL's ``fn`` and by torch ops.

    Why: MKL's bf16 kernel is fast only where MKL has one for the CPU.  On Intel it beats
    oneDNN's bf16 GEMM plus a cast (the module docstring's figures); on AMD's Zen 5 (family 26,
    AVX512-BF16) MKL 2024 runs it through its generic sgemm kernel, 4-4.7x slower than torch's
    bf16 ``mm`` + cast at the model's weight-gradient shapes (docs/performance.md).  Which one is
    faster is a property of the CPU and the MKL build, so it is measured once, here."""
    k, m, n = PROBE_KMN
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(k, m, generator=g).bfloat16(), torch.randn(k, n, generator=g).bfloat16()
    acc = torch.zeros(m, n)

    def by_torch():
        with torch.autocast("cpu", enabled=False):
            acc.add_((a.t() @ b).float())

    return _best_seconds(lambda: _call(fn, acc, a, b), repeats), _best_seconds(by_torch, repeats)


def _best_seconds(run, repeats: int) -> float:
    run()  # warm-up: first-call set-up (oneDNN primitives, MKL's buffers) is not the speed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _self_test(fn) -> bool:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g).bfloat16(), torch.randn(5, 4, generator=g).bfloat16()
    acc = torch.ones(3, 4)
    _call(fn, acc, a, b)
    with torch.autocast("cpu", enabled=False):  # the first caller may be inside bf16 autocast
        return torch.allclose(acc, 1 + a.float().t() @ b.float(), atol=1e-5, rtol=1e-5)


def _call(fn, acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor, transpose_a: bool = True, beta: float = 1.0) -> None:
    """acc = op(a) b + beta acc, all row-major and contiguous; op(a) = aᵀ or a."""
    m, n = acc.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    op_a = TRANS if transpose_a else NO_TRANS
    fn(ROW_MAJOR, op_a, NO_TRANS, m, n, k, 1.0, a.data_ptr(), a.shape[1], b.data_ptr(), n, beta, acc.data_ptr(), n)


def mkl_available() -> bool:
    """Whether MKL's bf16 GEMM with float32 accumulation is there (and passed its self-test)."""
    return _mkl_gemm_bf16bf16f32() is not None


def _usable(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """MKL's function when it can run this product in place, else None."""
    fn = _mkl_gemm_bf16bf16f32() if acc.device.type == "cpu" else None
    usable = (
        fn is not None
        and a.dtype == b.dtype == torch.bfloat16
        and acc.dtype == torch.float32
        and all(t.is_contiguous() for t in (acc, a, b))
        and max(acc.numel(), a.numel(), b.numel()) <= INT32_MAX
    )
    return fn if usable else None


def add_transposed_product(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += aᵀ b`` for acc [M, N] float32 and a [K, M], b [K, N] bf16 (float32 accumulation)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0] or acc.shape != (a.shape[1], b.shape[1]):
        raise ValueError(f"add_transposed_product: acc {tuple(acc.shape)} != a {tuple(a.shape)}ᵀ b {tuple(b.shape)}")
    fn = _usable(acc, a, b)
    if fn is not None:
        _call(fn, acc, a, b)
    else:
        acc += (a.t() @ b).to(acc.dtype)


def transposed_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``aᵀ b`` [M, N] in float32 for a [K, M], b [K, N] bf16: a weight's gradient over K rows.

    On the Intel Xeon MKL runs these large-K products ~1.2x faster than oneDNN's bf16 GEMM (the decoder's
    ∂W_q, [2048, 4092] x [4092, 513], inputs not in cache: 15.7 vs 19.1 ms), and its float32
    result is the float32 weight's gradient without a bf16 rounding or a cast."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"transposed_product: a {tuple(a.shape)}ᵀ b {tuple(b.shape)}")
    out = torch.empty(a.shape[1], b.shape[1], dtype=torch.float32, device=a.device)
    fn = _usable(out, a, b)
    if fn is not None:
        _call(fn, out, a, b, beta=0.0)
    else:
        out.copy_(a.t() @ b)
    return out


def add_product(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a b`` for acc [M, N] float32 and a [M, K], b [K, N] bf16 (float32 accumulation)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or acc.shape != (a.shape[0], b.shape[1]):
        raise ValueError(f"add_product: acc {tuple(acc.shape)} != a {tuple(a.shape)} b {tuple(b.shape)}")
    fn = _usable(acc, a, b)
    if fn is not None:
        _call(fn, acc, a, b, transpose_a=False)
    else:
        acc += (a @ b).to(acc.dtype)


def weight_grad(d_out: torch.Tensor, inp: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Σ over rows of ∂outᵀ in, for a weight of ``dtype``: a bf16 product for a float32 weight is
    accumulated in float32 (:func:`transposed_product`), never rounded to bf16."""
    if d_out.dtype == torch.bfloat16 and dtype == torch.float32:
        return transposed_product(d_out, inp)
    return (d_out.t() @ inp).to(dtype)


def bias_grad(d_out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Σ over rows of ∂out, for a bias of ``dtype``, as ∂outᵀ 1: a GEMM with one column (float32
    sums in bf16; a column sum with ``dtype=float32`` is ~7x slower, 2.6 vs 0.36 ms on [4000, 1536]).
    The recurrences once took it as the last column of ∂outᵀ [in ; 1], whose copy and odd width
    cost more (bf16, [4092, 768]ᵀ x [4092, 257]: 3.04 vs 2.36 ms + 0.36 ms)."""
    return weight_grad(d_out, d_out.new_ones(d_out.shape[0], 1), dtype).view(-1)
