"""Fixtures of the fast-path tests."""

from __future__ import annotations

import pytest
import torch

from pipeline.fast.cpu_kernels import cpu_kernels


@pytest.fixture(params=["cpu kernels", "torch ops"])
def kernels(request):
    """The loaded C++ kernels (what the CPU runs), or None: the torch ops of the same function,
    which CUDA, or a machine without a compiler, runs."""
    if request.param == "torch ops":
        return None
    loaded = cpu_kernels(torch.device("cpu"))
    assert loaded is not None, "the C++ kernels did not build: is g++ installed? (see the log warning)"
    return loaded


@pytest.fixture(params=["mkl", "torch ops"])
def mixed_gemm_path(request, monkeypatch):
    """Which bf16 GEMM with float32 accumulation pipeline/fast/mixed_gemm.py runs, whatever this
    CPU's one-off timing chose: MKL's (skipped where torch's build lacks it) or torch ops."""
    import pipeline.fast.mixed_gemm as mixed_gemm

    chosen = mixed_gemm._mkl_self_tested if request.param == "mkl" else lambda: None
    if request.param == "mkl" and chosen() is None:
        pytest.skip("this torch build does not export MKL's cblas_gemm_bf16bf16f32")
    monkeypatch.setattr(mixed_gemm, "_mkl_gemm_bf16bf16f32", chosen)
    return request.param
