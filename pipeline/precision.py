"""The arithmetic a run computes in: fp32, bf16 autocast, or ``auto``.

``auto`` (the training default) means bf16 autocast where the hardware multiplies bf16
natively, fp32 elsewhere.  Native bf16 is where autocast pays: on this project's CPU (AMX)
a default-size RNNsearch step runs 2.2-3.0x faster in bf16 (docs/performance.md), and nine
same-budget fp32/bf16 training pairs ended -0.94 to +0.56 val BLEU apart (mean -0.13; two
seeds of one precision: 0.98-1.77 apart).  Without native support (a CPU lacking
AVX512-BF16 and AMX, a pre-Ampere GPU) bf16 is emulated and slower than fp32, so ``auto``
keeps fp32 there.  Softmax and the loss stay fp32 under autocast.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from pipeline.config import Precision


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware (not by emulation)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # False on non-x86 builds
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def use_bf16(precision: Precision | str, device: torch.device) -> bool:
    """Whether a run with this ``precision`` setting computes in bf16 autocast on ``device``."""
    precision = Precision(precision)
    if precision is Precision.auto:
        return native_bf16(device)
    return precision is Precision.bf16


def precision_name(bf16: bool) -> str:
    """The resolved precision, as run files record it."""
    return Precision.bf16.value if bf16 else Precision.fp32.value


def autocast_for(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on the model's device, or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
