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
