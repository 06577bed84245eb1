"""``F.linear`` whose bf16 weight gradient is accumulated in float32 (CPU autocast).

Why: under CPU bf16 autocast, ``F.linear`` casts its float32 weight to bf16, and autograd
computes the weight's gradient ∂outᵀ x as a bf16 GEMM (oneDNN, its first operand
transposed: 280-540 GFLOP/s here), rounds it to bf16, then casts it back to float32 for the
parameter (ToCopyBackward), and sums ∂out for the bias in bf16 before casting that too.
:func:`linear` computes the same forward, but in the backward takes ∂W straight from MKL's
bf16 GEMM with float32 accumulation (:func:`pipeline.fast.mixed_gemm.weight_grad`,
1.12-1.23x faster at the model's [O, B·S] x [B·S, I] shapes) and ∂b as ∂outᵀ 1 from the same
GEMM (:func:`~pipeline.fast.mixed_gemm.bias_grad`): no bf16 rounding of either, and no
cast.  The encoder's input projections, the decoder's W_ie E y, the attention keys U_a h and
the deep-output readout go through it.

Elsewhere (no autocast, float32 or CUDA autocast, no MKL) it is ``F.linear`` itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.fast.mixed_gemm import bias_grad, mkl_available, weight_grad


class _Bf16Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        w = weight.to(torch.bfloat16)
        x2 = x.to(torch.bfloat16).reshape(-1, x.shape[-1])
        b = None if bias is None else bias.to(torch.bfloat16)
        out = F.linear(x2, w, b)
        ctx.save_for_backward(x2, w)
        ctx.shape, ctx.dtypes = x.shape, (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return out.view(*x.shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, d_out):
        x2, w = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        d2 = d_out.reshape(-1, d_out.shape[-1]).to(torch.bfloat16).contiguous()
        d_x = (d2 @ w).view(ctx.shape).to(x_dtype) if ctx.needs_input_grad[0] else None
        d_w = weight_grad(d2, x2.contiguous(), w_dtype)  # float32 accumulation, by MKL (_mixed: w needs it)
        d_b = bias_grad(d2, b_dtype) if ctx.needs_input_grad[2] else None
        return d_x, d_w, d_b


def _mixed(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this product runs under CPU bf16 autocast with a float32 weight and MKL at hand."""
    return (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and weight.dtype == torch.float32
        and torch.is_grad_enabled()
        and weight.requires_grad
        and mkl_available()
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; under CPU bf16 autocast its weight and bias gradients come
    back float32, accumulated in float32 (see the module docstring)."""
    if not _mixed(x, weight):
        return F.linear(x, weight, bias)
    with torch.autocast("cpu", enabled=False):
        return _Bf16Linear.apply(x, weight, bias)
