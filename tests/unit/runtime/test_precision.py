"""train.precision=auto: bf16 exactly on a CPU that multiplies bf16 natively (the faster precision there)."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import Precision
from pipeline.runtime.precision import autocast_for, cpu_native_bf16, use_bf16

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("precision", ["fp32", Precision.fp32])
def test_fp32_is_never_bf16(precision):
    assert not use_bf16(precision, CPU) and not use_bf16(precision, CUDA)


def test_bf16_is_bf16_even_without_native_support(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert use_bf16("bf16", CPU)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [(True, True, True), (True, False, True), (False, True, True), (False, False, False)],
)
def test_auto_on_the_cpu_follows_its_bf16_instructions(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert use_bf16("auto", CPU) is expected


def test_auto_on_cuda_is_fp32_and_bf16_can_be_forced(monkeypatch):
    """Kernel launches bound this model's step on a GPU, where bf16 measured slower (pipeline/precision.py),
    even on one that multiplies bf16 natively."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert not use_bf16(Precision.auto, CUDA)
    assert use_bf16(Precision.bf16, CUDA)


def test_auto_matches_this_machine():
    flags = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert cpu_native_bf16() is flags


def test_unknown_precision_fails():
    with pytest.raises(ValueError):
        use_bf16("fp16", CPU)


def test_autocast_for_runs_products_in_bf16_only_when_asked():
    a = torch.randn(4, 8)
    with autocast_for(CPU, True):
        assert (a @ a.T).dtype == torch.bfloat16
    with autocast_for(CPU, False):
        assert (a @ a.T).dtype == torch.float32


def _emulated_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]


@pytest.mark.parametrize("native", [True, False])
def test_forcing_bf16_where_it_is_emulated_warns_once(monkeypatch, caplog, native):
    """An AVX2-only CPU runs bf16 products through a reference GEMM, ~19x slower than fp32:
    a user who forces bf16 there is told so, once, and still gets bf16."""
    import pipeline.runtime.precision as precision

    monkeypatch.setattr(precision, "_warned_emulated", False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with caplog.at_level("WARNING", logger="pipeline.runtime.precision"):
        assert not use_bf16("fp32", CPU)
        assert use_bf16("auto", CPU) is native
        assert use_bf16("bf16", CPU) and use_bf16("bf16", CPU)
    warnings = _emulated_warnings(caplog)
    assert len(warnings) == (0 if native else 1)
    assert all("precision=auto picks fp32" in w for w in warnings)
