"""The CPU a run records (run manifest, bench.py): figures mean little without it."""

from __future__ import annotations

import platform

import pipeline.runtime.hardware as hardware
from pipeline.runtime.precision import cpu_native_bf16


def test_the_description_names_the_model_the_bf16_support_and_the_threads() -> None:
    text = hardware.cpu_description(3)
    assert text.startswith(hardware.cpu_model() + "; ")
    assert ("bf16 in hardware" in text) == cpu_native_bf16()
    assert ("bf16 emulated" in text) != cpu_native_bf16()
    assert text.endswith("; 3 threads")


def test_cpuinfo_lines_come_in_the_order_asked(tmp_path, monkeypatch) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2\nmodel name\t: Some CPU\n\nprocessor\t: 1\nmodel name\t: B\n")
    monkeypatch.setattr(hardware, "CPUINFO", info)
    assert hardware.cpuinfo_lines("model name", "flags") == ["model name\t: Some CPU", "flags\t\t: fpu avx2"]
    assert hardware.cpu_model() == "Some CPU"


def test_the_model_names_its_family_and_model_numbers(tmp_path, monkeypatch) -> None:
    """Virtual machines may name Zen 3, 4 and 5 alike ``AMD EPYC``: the numbers tell them apart."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n")
    monkeypatch.setattr(hardware, "CPUINFO", info)
    assert hardware.cpu_model() == "AMD EPYC (family 26 model 2)"


def test_without_cpuinfo_the_model_falls_back_to_the_platform(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "missing")
    assert hardware.cpuinfo_lines("model name") == []
    assert hardware.cpu_model() == (platform.processor() or platform.machine() or "unknown CPU")
