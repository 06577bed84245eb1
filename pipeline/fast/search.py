"""The searches' best next tokens by one C++ kernel on the CPU (kernels/top_log_probs.cpp).

:func:`pipeline.decoding.search.top_log_probs` makes a float32 copy of the logits, a
log-softmax into a new [R, V] tensor, masks it and runs ``topk`` over it (``topk`` 13% and
``_log_softmax`` 7% of a profiled fp32 beam-5 decode).  The kernel reads each row once: copy to
float32 and max, Σ exp, then a scan that keeps the k best; the same values and ids, ties to
the lower id (tests/unit/fast/test_equivalence.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pipeline.fast.cpu_kernels import cpu_kernels
from pipeline.fast.registry import FastImpl, register
from pipeline.model.seq2seq import Seq2Seq


def kernel_top_log_probs(kernels) -> Callable:
    """``top_log_probs(logits, forced_end, k, banned, eos)`` of :mod:`pipeline.decoding.search`, by ``kernels``
    (chosen for CPU models only, whose logits are float32 or bf16)."""

    def top_log_probs(
        logits: torch.Tensor, forced_end: torch.Tensor, k: int, banned: Sequence[int], eos: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return kernels.top_log_probs(logits.contiguous(), k, list(banned), forced_end.contiguous(), eos)

    return top_log_probs


def _build(model: nn.Module, device: torch.device) -> Callable | None:
    kernels = cpu_kernels(device)
    return None if kernels is None else kernel_top_log_probs(kernels)


register(
    FastImpl(
        name="top_log_probs_kernel",
        component="search",
        replaces=Seq2Seq,
        summary="greedy and beam search's k best next tokens by log-softmax in one C++ pass over the logits",
        devices=("cpu",),
        covers=lambda model: None,
        build=_build,
    )
)
