"""The arithmetic a run computes in: fp32, bf16 autocast, or ``auto``.

``auto`` (the training default) means whichever of the two trains faster: bf16 autocast on a
CPU that multiplies bf16 natively, fp32 elsewhere.  Softmax and the loss stay fp32 under autocast.

* A CPU with AVX512-BF16 or AMX: arithmetic bounds the step, and a default-size RNNsearch step
  runs 2.2-3.0x faster in bf16 on this project's CPU (docs/performance.md); nine same-budget
  fp32/bf16 training pairs ended -0.94 to +0.56 val BLEU apart (mean -0.13; two seeds of one
  precision: 0.98-1.77 apart).  A CPU without them emulates bf16, slower than fp32.
* CUDA: the recurrences' per-time-step kernels are small, so kernel launches bound the step and
  autocast's casts add launches.  On an H200 (torch 2.11) bf16 trained the default RNNsearch at
  x0.95, x0.86 and x0.95 of fp32's speed with batches of 4k, 16k and 32k tokens (on/off pairs,
  ``bench_pairs.py --switch bf16 --device cuda``), so ``auto`` is fp32 there; a model large
  enough to be bound by its matrix products may gain from ``bf16``, which forces it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from pipeline.config import Precision


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AVX512-BF16 or AMX), not by emulation."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # False on non-x86 builds
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def use_bf16(precision: Precision | str, device: torch.device) -> bool:
    """Whether a run with this ``precision`` setting computes in bf16 autocast on ``device``."""
    precision = Precision(precision)
    if precision is Precision.auto:
        return device.type == "cpu" and cpu_native_bf16()
    return precision is Precision.bf16


def precision_name(bf16: bool) -> str:
    """The resolved precision, as run files record it."""
    return Precision.bf16.value if bf16 else Precision.fp32.value


def autocast_for(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on the model's device, or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
