"""The arithmetic a run computes in: fp32, bf16 autocast, or ``auto``.

``auto`` (the training default) means whichever of the two trains faster: bf16 autocast on a
CPU that multiplies bf16 natively, fp32 elsewhere.  Softmax and the loss stay fp32 under autocast.

* A CPU with AVX512-BF16 or AMX: arithmetic bounds the step, and a default-size RNNsearch step
  runs 2.2-3.0x faster in bf16 on this project's Intel CPU (docs/performance.md); nine same-budget
  fp32/bf16 training pairs ended -0.94 to +0.56 val BLEU apart (mean -0.13; two seeds of one
  precision: 0.98-1.77 apart).  A CPU without them emulates bf16, far slower than fp32: on an
  AMD EPYC with AVX2 only, torch runs bf16 products through its reference GEMM, and a bf16
  step of the default RNNsearch took 19x as long as an fp32 one (73 vs 1,412 tok/s).  Forcing
  ``bf16`` there is allowed (the arithmetic is the same) but warned about, once per process.
* CUDA: the recurrences' per-time-step kernels are small, so kernel launches bound the step and
  autocast's casts add launches.  On an H200 (torch 2.11) bf16 trained the default RNNsearch at
  x0.95, x0.86 and x0.95 of fp32's speed with batches of 4k, 16k and 32k tokens (on/off pairs,
  ``bench_pairs.py --switch bf16 --device cuda``), so ``auto`` is fp32 there; a model large
  enough to be bound by its matrix products may gain from ``bf16``, which forces it.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext

import torch

from pipeline.config import Precision

log = logging.getLogger(__name__)
_warned_emulated = False


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AVX512-BF16 or AMX), not by emulation."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # False on non-x86 builds
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def bf16_in_hardware(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware: the CPU's instructions, or a GPU's native bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and cpu_native_bf16()


def use_bf16(precision: Precision | str, device: torch.device) -> bool:
    """Whether a run with this ``precision`` setting computes in bf16 autocast on ``device``
    (warning, once, where ``bf16`` is forced on a device that only emulates it)."""
    global _warned_emulated
    precision = Precision(precision)
    if precision is Precision.auto:
        return device.type == "cpu" and cpu_native_bf16()
    if precision is Precision.bf16 and not _warned_emulated and not bf16_in_hardware(device):
        _warned_emulated = True
        log.warning(
            "precision=bf16 on a %s without bf16 instructions: bf16 is emulated there and computes many times "
            "slower than fp32 (19x on an AVX2-only CPU, docs/performance.md); precision=auto picks fp32 here",
            device.type.upper() if device.type == "cuda" else "CPU",
        )
    return precision is Precision.bf16


def precision_name(bf16: bool) -> str:
    """The resolved precision, as run files record it."""
    return Precision.bf16.value if bf16 else Precision.fp32.value


def autocast_for(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on the model's device, or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
