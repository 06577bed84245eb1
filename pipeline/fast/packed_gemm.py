"""``c + x op(W)`` for many x against one float32 W, by MKL's packed-weight SGEMM on the CPU.

Why: a recurrence multiplies every step's [B, K] input by the same weight (the decoder's W_q
[512 -> 2048] and W_ic [1024 -> 1536] in the forward pass, their transposes in the backward),
~20 times a step with B ~ 190 rows.  A plain GEMM re-packs the weight into MKL's blocked layout
on every call; ``cblas_sgemm_pack`` does it once per recurrence, and ``cblas_sgemm_compute``
then multiplies from the packed copy: 22 such products ran x1.11-1.13 faster for the decoder's
forward shapes and x1.05-1.12 for its backward ones (docs/performance.md).  fp32 only: MKL
exports no bf16 pack (the bf16 path's products go through oneDNN or pipeline/fast/mixed_gemm.py).
torch's CPU builds for x86-64 link MKL into libtorch_cpu and export both symbols; where they are
missing or fail the one self-test, :class:`RepeatedWeight` runs ``torch.addmm`` instead.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from pipeline.fast.mkl import B_MATRIX, INT32_MAX, NO_TRANS, PACKED, ROW_MAJOR, TRANS, mkl_function, self_tested

_INT, _FLOAT, _PTR = ctypes.c_int, ctypes.c_float, ctypes.c_void_p


@functools.cache
def _mkl_packed_sgemm():
    """(``cblas_sgemm_pack_get_size``, ``cblas_sgemm_pack``, ``cblas_sgemm_compute``) from the
    library torch has loaded, or None."""
    functions = (
        mkl_function("cblas_sgemm_pack_get_size", ctypes.c_size_t, [_INT] * 4),
        mkl_function("cblas_sgemm_pack", None, [_INT] * 6 + [_FLOAT, _PTR, _INT, _PTR]),
        mkl_function("cblas_sgemm_compute", None, [_INT] * 6 + [_PTR, _INT, _PTR, _INT, _FLOAT, _PTR, _INT]),
    )
    return self_tested(functions, _self_test, "using torch.addmm for the recurrences' products")


def _self_test(*functions) -> bool:
    g = torch.Generator().manual_seed(0)
    w, x, c = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g), torch.randn(5, 4, generator=g)
    got = RepeatedWeight(w, transpose=True, rows=5, _functions=functions).addmm(c, x)
    with torch.autocast("cpu", enabled=False):  # the first caller may be inside autocast
        return torch.allclose(got, torch.addmm(c, x, w.t()), atol=1e-5, rtol=1e-5)


def packed_sgemm_available() -> bool:
    """Whether MKL's packed SGEMM is there (and passed its self-test)."""
    return _mkl_packed_sgemm() is not None


class RepeatedWeight:
    """One weight, packed once, for products ``c + x op(W)`` with x of ``rows`` rows.

    ``op(W)`` is ``Wᵀ`` with ``transpose=True`` (W [N, K], as a linear layer's weight) and W
    otherwise (W [K, N]).  Where packing does not apply (not a float32 CPU tensor, MKL missing,
    or an x of another shape or layout), :meth:`addmm` is ``torch.addmm``: same result to float
    rounding either way.
    """

    def __init__(self, w: torch.Tensor, transpose: bool, rows: int, _functions=None) -> None:
        self.w_op = w.t() if transpose else w
        self.rows = rows
        self.k, self.n = self.w_op.shape
        self.packed = None
        usable = (
            w.device.type == "cpu"
            and w.dtype == torch.float32
            and w.is_contiguous()
            and max(w.numel(), rows * max(self.k, self.n)) <= INT32_MAX
        )
        functions = _functions or (_mkl_packed_sgemm() if usable else None)
        if not usable or functions is None:
            return
        get_size, pack, self._compute = functions
        size = get_size(B_MATRIX, rows, self.n, self.k)
        if size < 4 * self.k * self.n:  # not a packed float32 copy of W: a mismatched MKL; never write past it
            return
        self.packed = torch.empty((size + 3) // 4, dtype=torch.float32)  # bytes; torch aligns to 64
        ld = w.shape[1]
        op = TRANS if transpose else NO_TRANS
        pack(ROW_MAJOR, B_MATRIX, op, rows, self.n, self.k, 1.0, w.data_ptr(), ld, self.packed.data_ptr())

    def addmm(self, c: torch.Tensor, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``c + x op(W)`` [rows, N] (``c`` [N] or [rows, N]), into ``out`` when given (``out`` may be ``c``)."""
        if self.packed is None or x.shape != (self.rows, self.k) or x.dtype != torch.float32 or not x.is_contiguous():
            return torch.addmm(c, x, self.w_op, out=out)
        if out is None:
            out = torch.empty(self.rows, self.n, dtype=torch.float32)
        elif out.shape != (self.rows, self.n) or out.dtype != torch.float32 or not out.is_contiguous():
            return torch.addmm(c, x, self.w_op, out=out)
        if c is not out:
            out.copy_(c)
        n = self.n
        self._compute(
            ROW_MAJOR, NO_TRANS, PACKED, self.rows, n, self.k, x.data_ptr(), self.k, self.packed.data_ptr(), n,
            1.0, out.data_ptr(), n,
        )  # fmt: skip
        return out
