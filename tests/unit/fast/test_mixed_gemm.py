"""``add_transposed_product`` (acc += aᵀ b), ``add_product`` (acc += a b) and ``transposed_product``
(aᵀ b): bf16 inputs and a float32 accumulator, by MKL where torch's build exports it, else torch
ops; all against float64 arithmetic on the same bf16 values."""

from __future__ import annotations

import pytest
import torch

import pipeline.fast.mixed_gemm as mixed_gemm
from pipeline.fast.mixed_gemm import add_product, add_transposed_product, transposed_product

PRODUCTS = {"aᵀ b": add_transposed_product, "a b": add_product}


def _operands(transposed: bool, k=300, m=77, n=33):
    g = torch.Generator().manual_seed(6)
    a = torch.randn(k, m, generator=g).bfloat16()
    a = a if transposed else a.t().contiguous()
    b, acc = torch.randn(k, n, generator=g).bfloat16(), torch.randn(m, n, generator=g)
    op_a = a.double().t() if transposed else a.double()
    return acc, a, b, acc.double() + op_a @ b.double()


@pytest.mark.parametrize("mixed_gemm_path", ["mkl"], indirect=True)
@pytest.mark.parametrize("product", PRODUCTS)
def test_mkl_path_accumulates_in_float32(product, mixed_gemm_path):
    acc, a, b, want = _operands(product == "aᵀ b")
    PRODUCTS[product](acc, a, b)
    torch.testing.assert_close(acc.double(), want, atol=1e-4, rtol=1e-5)  # float32 sums of 300 products


@pytest.mark.parametrize("product", PRODUCTS)
def test_torch_ops_path_where_mkl_is_missing(monkeypatch, product):
    monkeypatch.setattr(mixed_gemm, "_mkl_gemm_bf16bf16f32", lambda: None)
    assert not mixed_gemm.mkl_available()
    acc, a, b, want = _operands(product == "aᵀ b")
    PRODUCTS[product](acc, a, b)
    torch.testing.assert_close(acc.double(), want, atol=0.2, rtol=2**-7)  # the product is rounded to bf16 first


@pytest.mark.parametrize("product", PRODUCTS)
def test_shape_mismatch_is_an_error_not_a_stray_write(product):
    acc, a, b, _ = _operands(product == "aᵀ b")
    with pytest.raises(ValueError, match="acc \\(77, 33\\)"):
        PRODUCTS[product](acc, a, b[:, :5])


def test_transposed_product_is_a_new_float32_matrix(mixed_gemm_path):
    """A weight's gradient for a float32 weight: float32 sums by MKL; rounded to bf16 by torch ops."""
    path = mixed_gemm_path
    acc, a, b, want = _operands(True)
    got = transposed_product(a, b)
    assert got.dtype == torch.float32 and got.shape == (77, 33)
    tolerance = {"atol": 1e-4, "rtol": 1e-5} if path == "mkl" else {"atol": 0.2, "rtol": 2**-7}
    torch.testing.assert_close(got.double(), want - acc.double(), **tolerance)
    with pytest.raises(ValueError, match="transposed_product"):
        transposed_product(a, b[:5])


def test_first_use_inside_bf16_autocast_passes_the_self_test(monkeypatch):
    """The first caller may run under CPU bf16 autocast (pipeline/model/linear.py): the self-test's
    float32 reference must not become a bf16 product there."""
    raw = mixed_gemm._mkl_self_tested.__wrapped__
    if raw() is None:
        pytest.skip("this torch build does not export MKL's cblas_gemm_bf16bf16f32")
    monkeypatch.setattr(mixed_gemm, "_mkl_self_tested", raw)  # uncached: the self-test runs again
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert mixed_gemm._mkl_self_tested() is not None


CHOICES = [(1.0e-3, "MKL"), (1.09e-3, "MKL"), (1.2e-3, "torch ops"), (4.6e-3, "torch ops")]  # torch ops: 1 ms


@pytest.mark.parametrize(("t_mkl", "chosen"), CHOICES)
def test_mkl_is_used_only_where_it_is_not_slower_than_torch_ops(monkeypatch, caplog, t_mkl, chosen):
    """On AMD's Zen 5 MKL's bf16 GEMM runs ~4.6x slower than torch's; then torch ops run and the
    float32-accumulating paths of linear.py and recurrence.py stand down (mkl_available False).
    The one-off timing is logged with the choice."""
    fn = object()
    monkeypatch.setattr(mixed_gemm, "_mkl_self_tested", lambda: fn)
    monkeypatch.setattr(mixed_gemm, "_probe_times", lambda _: (t_mkl, 1.0e-3))
    with caplog.at_level("INFO", logger="pipeline.fast.mixed_gemm"):
        got = mixed_gemm._mkl_gemm_bf16bf16f32.__wrapped__()
    assert got is (fn if chosen == "MKL" else None)
    assert f"using {chosen}" in caplog.text


def test_probe_times_both_paths_on_this_cpu():
    """The probe runs each path for real and returns positive seconds (what the choice compares)."""
    fn = mixed_gemm._mkl_self_tested()
    if fn is None:
        pytest.skip("this torch build does not export MKL's cblas_gemm_bf16bf16f32")
    t_mkl, t_torch = mixed_gemm._probe_times(fn, repeats=1)
    assert 0 < t_mkl < 1 and 0 < t_torch < 1
