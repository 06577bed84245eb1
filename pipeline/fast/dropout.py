"""Inverted dropout (Srivastava et al. 2014) with a cheaper random mask on the CPU, and the
decoder's maxout fused with its dropout: the fast twins of ``nn.Dropout`` and
:func:`pipeline.model.decoder.maxout_pairs` followed by it.

``F.dropout`` on the CPU draws one 32-bit number per element from torch's generator
(``bernoulli_``), single-threaded: 25-33 ms for a [3700, 512] activation here, four
masks a training step, ~6% of a bf16 step.  :func:`dropout` draws 64-bit words and
compares each of their four 16-bit pieces with a threshold, so the generator runs a
quarter as often (~5 ms for the same mask).  The drop probability is thereby rounded to
a multiple of 2^-16 (0.2 -> 0.199997), and the kept values are scaled by
1 / (1 - that probability), so the expectation stays exactly the input.  The draws
come from torch's default generator: ``torch.manual_seed`` and saved RNG states govern
them as before.  CUDA tensors keep ``F.dropout``.

Given the fused CPU kernels (pipeline/fast/cpu_kernels.py), a float32 or bf16
dropout is one kernel call forward and one backward instead (kernels/dropout.cpp, ~1 ms for
the same mask instead of ~9): the same 16-bit pieces and threshold, but drawn from a
counter-based stream seeded by one draw from torch's generator, on all threads, and the mask
kept as one byte per element.  The two paths draw different masks from the same seed; each is
reproducible under ``torch.manual_seed``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16  # 16-bit pieces


def dropped_pieces(p: float) -> int:
    """How many of the 2^16 values of a 16-bit random piece drop an element: p rounded to 2^-16."""
    return round(p * _LEVELS)


def draw_seed() -> int:
    """One 64-bit draw from torch's default generator, seeding a kernel's counter-based stream."""
    return int(torch.randint(-(2**63), 2**63 - 1, (1,)))


class _ByteCodedKernel(torch.autograd.Function):
    """``forward(x, dropped, seed) -> (y, code)`` and ``backward(grad, code, dropped)`` of a fused CPU
    kernel (kernels/dropout.cpp): the byte code (kept or not, which of a pair won) is all that is saved."""

    @staticmethod
    def forward(ctx, x, dropped, seed, forward, backward):
        y, code = forward(x.contiguous(), dropped, seed)
        ctx.save_for_backward(code)
        ctx.dropped, ctx.kernel_backward = dropped, backward
        return y

    @staticmethod
    def backward(ctx, grad):
        (code,) = ctx.saved_tensors
        return ctx.kernel_backward(grad.contiguous(), code, ctx.dropped), None, None, None, None


def by_kernel(x: torch.Tensor, dropped: int, forward, backward) -> torch.Tensor:
    """``forward``/``backward``, a kernel pair of kernels/dropout.cpp, as an autograd op; the
    seed is drawn from torch's generator only where something is dropped."""
    return _ByteCodedKernel.apply(x, dropped, draw_seed() if dropped else 0, forward, backward)


def kernels_for(x: torch.Tensor, dropped: int, kernels):
    """``kernels`` where they can drop ``dropped`` pieces of ``x``'s elements (CPU, fp32/bf16), else None."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16) or dropped >= _LEVELS:
        return None
    return kernels


def dropout(x: torch.Tensor, p: float, training: bool, kernels=None) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with the mask drawn 16 bits at a time on the CPU."""
    if not training or p == 0.0:
        return x
    dropped = dropped_pieces(p)  # pieces in [-2^15, -2^15 + dropped) are dropped
    if x.device.type != "cpu" or dropped >= _LEVELS:  # p >= 1 - 2^-17: all dropped
        return F.dropout(x, p, training)
    kernels = kernels_for(x, dropped, kernels)
    if kernels is not None:
        return by_kernel(x, dropped, kernels.dropout_forward, kernels.dropout_backward)
    words = torch.randint(-(2**63), 2**63 - 1, ((x.numel() + 3) // 4,), dtype=torch.int64)
    keep = words.view(torch.int16)[: x.numel()].view(x.shape) >= dropped - _LEVELS // 2
    return torch.where(keep, x * (_LEVELS / (_LEVELS - dropped)), 0.0)  # scaled in float32, rounded once


class Dropout(nn.Module):
    """``nn.Dropout`` through :func:`dropout` (no parameters, so it takes ``nn.Dropout``'s place in a
    model without changing its checkpoints)."""

    def __init__(self, p: float, kernels=None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p, self.kernels = p, kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.kernels)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _MaxoutPairs(torch.autograd.Function):
    """max(t̃_2k, t̃_2k+1) for every k (the maxout of appendix A.2.2).  ``amax``'s backward
    compares the input with the output again and divides by the tie count; here the forward
    keeps which of each pair won (one bool per output) and the backward routes the gradient
    there (ties, of measure zero, go to the first)."""

    @staticmethod
    def forward(ctx, pre):
        pairs = pre.unflatten(-1, (-1, 2))
        first = pairs[..., 0] >= pairs[..., 1]
        ctx.save_for_backward(first)
        return torch.where(first, pairs[..., 0], pairs[..., 1])

    @staticmethod
    def backward(ctx, grad):
        (first,) = ctx.saved_tensors
        zero = grad.new_zeros(())
        return torch.stack([torch.where(first, grad, zero), torch.where(first, zero, grad)], -1).flatten(-2)


def maxout_dropout(pre: torch.Tensor, p: float, training: bool, kernels=None) -> torch.Tensor:
    """``dropout(maxout_pairs(pre), p, training)``: by one fused CPU kernel where ``kernels`` apply
    (float32/bf16 on the CPU), which draws its mask as :func:`dropout` does."""
    dropped = dropped_pieces(p) if training else 0
    kernels = kernels_for(pre, dropped, kernels)
    if kernels is None:
        return dropout(_MaxoutPairs.apply(pre), p, training)
    return by_kernel(pre, dropped, kernels.maxout_dropout_forward, kernels.maxout_dropout_backward)
