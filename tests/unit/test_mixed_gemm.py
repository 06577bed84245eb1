"""``add_transposed_product``: acc += aᵀ b with bf16 inputs and a float32 accumulator, by MKL
where torch's build exports it, else torch ops; both against float64 arithmetic on the same
bf16 values."""

from __future__ import annotations

import pytest
import torch

import pipeline.model.mixed_gemm as mixed_gemm
from pipeline.model.mixed_gemm import add_transposed_product


def _operands(k=300, m=77, n=33):
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(k, m, generator=g).bfloat16(), torch.randn(k, n, generator=g).bfloat16()
    acc = torch.randn(m, n, generator=g)
    return acc, a, b, acc.double() + a.double().t() @ b.double()


def test_mkl_path_accumulates_in_float32():
    if mixed_gemm._mkl_gemm_bf16bf16f32() is None:
        pytest.skip("this torch build does not export MKL's cblas_gemm_bf16bf16f32")
    acc, a, b, want = _operands()
    add_transposed_product(acc, a, b)
    torch.testing.assert_close(acc.double(), want, atol=1e-4, rtol=1e-5)  # float32 sums of 300 products


def test_torch_ops_path_where_mkl_is_missing(monkeypatch):
    monkeypatch.setattr(mixed_gemm, "_mkl_gemm_bf16bf16f32", lambda: None)
    acc, a, b, want = _operands()
    add_transposed_product(acc, a, b)
    torch.testing.assert_close(acc.double(), want, atol=0.2, rtol=2**-7)  # the product is rounded to bf16 first


def test_shape_mismatch_is_an_error_not_a_stray_write():
    acc, a, b, _ = _operands()
    with pytest.raises(ValueError, match="acc \\(77, 33\\)"):
        add_transposed_product(acc, a, b[:, :5])
