"""``pipeline.fast.linear.linear``: F.linear, with float32-accumulated weight and bias gradients
under CPU bf16 autocast.  Checked against F.linear (same forward, gradients within bf16
rounding) and against float64 arithmetic on the same bf16 values (closer than F.linear's)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pipeline.fast.linear as linear_module
import pipeline.fast.mixed_gemm as mixed_gemm
from pipeline.fast.linear import linear

by_mkl = pytest.mark.parametrize("mixed_gemm_path", ["mkl"], indirect=True)  # whatever this CPU chose


def _layer(bias=True, lead=(7, 60), i=96, o=80):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(*lead, i, generator=g).requires_grad_()
    w = (torch.randn(o, i, generator=g) * 0.1).requires_grad_()
    b = torch.randn(o, generator=g).requires_grad_() if bias else None
    d_out = torch.randn(*lead, o, generator=g).bfloat16()
    return x, w, b, d_out


def _run(fn, x, w, b, d_out):
    for t in (x, w, b):
        if t is not None:
            t.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fn(x, w, b)
    y.backward(d_out)
    return y, x.grad, w.grad, None if b is None else b.grad


@by_mkl
@pytest.mark.parametrize("bias", [True, False])
def test_same_forward_and_gradients_as_autocast_f_linear(bias, mixed_gemm_path):
    x, w, b, d_out = _layer(bias)
    y, dx, dw, db = _run(linear, x, w, b, d_out)
    y_ref, dx_ref, dw_ref, db_ref = _run(F.linear, x, w, b, d_out)
    assert y.dtype == torch.bfloat16 and y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, atol=0, rtol=0)  # the same bf16 GEMM
    assert dx.dtype == dw.dtype == torch.float32
    torch.testing.assert_close(dx, dx_ref, atol=0, rtol=0)
    torch.testing.assert_close(dw, dw_ref, atol=0.05, rtol=2**-7)  # the reference is rounded to bf16
    if bias:
        assert db.dtype == torch.float32
        torch.testing.assert_close(db, db_ref, atol=0.05, rtol=2**-7)


@by_mkl
def test_weight_and_bias_gradients_are_float32_sums(mixed_gemm_path):
    """420 rows of products: F.linear's bf16 gradient is off by ~2^-9 relative, this one by float32 rounding."""
    x, w, b, d_out = _layer(lead=(7, 60))
    _, _, dw, db = _run(linear, x, w, b, d_out)
    d64, x64 = d_out.double().flatten(0, 1), x.detach().bfloat16().double().flatten(0, 1)
    torch.testing.assert_close(dw.double(), d64.t() @ x64, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(db.double(), d64.sum(0), atol=1e-4, rtol=1e-5)
    _, _, dw_ref, _ = _run(F.linear, x, w, b, d_out)
    err, err_ref = ((g.double() - d64.t() @ x64).abs().max().item() for g in (dw, dw_ref))
    assert err < err_ref / 10


def test_outside_bf16_autocast_it_is_f_linear(monkeypatch):
    calls = []
    monkeypatch.setattr(linear_module._Bf16Linear, "apply", lambda *a: calls.append(a))
    x, w, b, _ = _layer()
    torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), atol=0, rtol=0)  # float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        linear(x, w, b)  # inference: nothing to accumulate
    assert calls == []


def test_without_mkl_it_is_autocast_f_linear(monkeypatch):
    monkeypatch.setattr(mixed_gemm, "_mkl_gemm_bf16bf16f32", lambda: None)
    x, w, b, d_out = _layer()
    got, want = _run(linear, x, w, b, d_out), _run(F.linear, x, w, b, d_out)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=0, rtol=0)
