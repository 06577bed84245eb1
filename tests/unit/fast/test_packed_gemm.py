"""``RepeatedWeight.addmm`` (c + x op(W) from a weight packed once by MKL) against torch.addmm:
the same products, to float32 rounding, on the packed path and on every fallback."""

from __future__ import annotations

import pytest
import torch

import pipeline.fast.packed_gemm as packed_gemm
from pipeline.fast.mkl import mkl_function
from pipeline.fast.packed_gemm import RepeatedWeight, packed_sgemm_available

ROWS, K, N = 37, 70, 45


def _require_packed_sgemm():
    """Skip where torch's build lacks the symbols; where it has them, the packed path must work (a
    bug in it would fail the self-test and silently fall back to torch.addmm otherwise)."""
    names = ("cblas_sgemm_pack_get_size", "cblas_sgemm_pack", "cblas_sgemm_compute")
    if any(mkl_function(name, None, []) is None for name in names):
        pytest.skip("this torch build does not export MKL's packed SGEMM")
    assert packed_sgemm_available(), "MKL's packed SGEMM is there but failed its self-test"


def _operands(transpose: bool, bias_shape: tuple):
    g = torch.Generator().manual_seed(3)
    w = torch.randn((N, K) if transpose else (K, N), generator=g)
    x, c = torch.randn(ROWS, K, generator=g), torch.randn(*bias_shape, generator=g)
    return w, x, c, torch.addmm(c, x, w.t() if transpose else w)


@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("bias_shape", [(N,), (ROWS, N)])
def test_packed_product_equals_addmm(transpose, bias_shape):
    _require_packed_sgemm()
    w, x, c, want = _operands(transpose, bias_shape)
    weight = RepeatedWeight(w, transpose, ROWS)
    assert weight.packed is not None
    for _ in range(2):  # the packed copy is reused
        torch.testing.assert_close(weight.addmm(c, x), want, atol=1e-5, rtol=1e-5)
    out = torch.full((ROWS, N), float("nan"))
    assert weight.addmm(c, x, out=out) is out
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)


def test_in_place_into_c():
    _require_packed_sgemm()
    w, x, c, want = _operands(False, (ROWS, N))
    assert RepeatedWeight(w, False, ROWS).addmm(c, x, out=c) is c
    torch.testing.assert_close(c, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["mkl missing", "bf16", "other row count", "non-contiguous input", "strided out"])
def test_falls_back_to_addmm(monkeypatch, case):
    w, x, c, want = _operands(True, (N,))
    if case == "mkl missing":
        monkeypatch.setattr(packed_gemm, "_mkl_packed_sgemm", lambda: None)
    rows = ROWS + 1 if case == "other row count" else ROWS
    weight = RepeatedWeight(w.bfloat16() if case == "bf16" else w, True, rows)
    if case == "bf16":
        x, c, want = x.bfloat16(), c.bfloat16(), torch.addmm(c.bfloat16(), x.bfloat16(), w.bfloat16().t())
        assert weight.packed is None
    if case == "non-contiguous input":
        wide = torch.zeros(ROWS, 2 * K)
        wide[:, ::2] = x
        x = wide[:, ::2]
    tolerance = {"atol": 0.1, "rtol": 2**-7} if case == "bf16" else {"atol": 1e-5, "rtol": 1e-5}
    out = torch.zeros(ROWS, 2 * N)[:, ::2] if case == "strided out" else None
    got = weight.addmm(c, x, out=out)
    assert out is None or got.data_ptr() == out.data_ptr()
    torch.testing.assert_close(got, want, **tolerance)


def test_self_test_passes_inside_bf16_autocast_and_a_failed_one_falls_back(monkeypatch, caplog):
    """The first caller may run under CPU autocast; an MKL whose products come out wrong (an ILP64
    build, say) is refused with one warning, and the products then run through torch.addmm."""
    _require_packed_sgemm()
    raw = packed_gemm._mkl_packed_sgemm.__wrapped__
    monkeypatch.setattr(packed_gemm, "_mkl_packed_sgemm", raw)  # uncached: the self-test runs again
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert packed_sgemm_available()
    found = dict(zip(["cblas_sgemm_pack_get_size", "cblas_sgemm_pack"], raw()))

    def cblas_sgemm_compute(*args):  # computes nothing: C keeps its input
        pass

    found["cblas_sgemm_compute"] = cblas_sgemm_compute
    monkeypatch.setattr(packed_gemm, "mkl_function", lambda name, *signature: found[name])
    with caplog.at_level("WARNING", logger="pipeline.fast.mkl"):
        assert not packed_sgemm_available()
    assert any("failed its self-test" in r.getMessage() for r in caplog.records)
    w, x, c, want = _operands(True, (N,))
    torch.testing.assert_close(RepeatedWeight(w, True, ROWS).addmm(c, x), want, atol=1e-5, rtol=1e-5)
