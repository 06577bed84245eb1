"""The device a run computes on: ``auto`` resolved, and the CPU described in words a reader can compare.

Why: this project's machines are not all one CPU.  The same "2 cores" have been an Intel CPU
with AVX-512 and AMX (bf16 in hardware, fp32 matmul peak ~270-330 GFLOP/s) and an AMD EPYC
with AVX2 only (no bf16 instructions, peak ~95-110 GFLOP/s), and figures from the two differ by
2-3x in fp32 and far more in bf16.  A throughput or a precision choice means little without
the CPU it came from, so the run manifest and ``scripts/bench.py`` record it.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from pipeline.errors import UserError
from pipeline.runtime.precision import cpu_native_bf16

CPUINFO = Path("/proc/cpuinfo")


def cpuinfo_lines(*keys: str) -> list[str]:
    """The first line of /proc/cpuinfo for each of ``keys`` (e.g. ``model name``, ``flags``), in
    that order; empty where there is no /proc/cpuinfo (not Linux)."""
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return []
    found = []
    for key in keys:
        found += [ln for ln in lines if ln.split(":", 1)[0].strip() == key][:1]
    return found


def cpu_model() -> str:
    """The CPU's model name with its family and model numbers (``AMD EPYC (family 26 model 2)``,
    ``Intel(R) Xeon(R) ... (family 6 model 207)``), or the machine type where unknown.  The numbers
    matter: a virtual machine may name every AMD EPYC alike, from Zen 3 (AVX2 only) to Zen 5."""
    found = {
        k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in cpuinfo_lines("model name", "cpu family", "model"))
    }
    name = found.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if found.get("cpu family") and found.get("model"):
        name += f" (family {found['cpu family']} model {found['model']})"
    return name


def cpu_description(threads: int) -> str:
    """One line: model, the widest vector instructions torch uses here, whether bf16 products run in
    hardware (``auto`` precision then trains in bf16) or emulated, and the intra-op threads."""
    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = "bf16 in hardware" if cpu_native_bf16() else "bf16 emulated"
    return f"{cpu_model()}; {capability}, {bf16}; {threads} threads"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device={name} but CUDA is not available here; use train.device=auto or cpu")
    return torch.device(name)
