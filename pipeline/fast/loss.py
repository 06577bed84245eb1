"""Label-smoothed cross-entropy fused with the output layer, chunked for speed and memory: the fast
twin of :class:`pipeline.model.loss.SmoothedCrossEntropy` (:class:`FusedCrossEntropy`).

With smoothing ε over V classes (the definition of ``torch.nn.functional.cross_entropy``)
the loss of one position with logits x and target y is

    ℓ = (1 - ε) (-log p_y) + ε/V Σ_v (-log p_v)  =  lse(x) - (1 - ε) x_y - ε mean_v(x_v)

and its gradient is  ∂ℓ/∂x_v = softmax(x)_v - (1 - ε) [v = y] - ε/V.

``F.linear`` followed by ``F.cross_entropy`` stores the [N, V] logits (N = B·T, about
4096 x 8000 here), their log_softmax, an [N, V] NLL gradient and the softmax backward,
and under bf16 autocast an fp32 copy of the logits: several passes over a 65-130 MB
matrix per step, each freshly allocated (page faults), plus output-layer GEMMs over
padding rows.  :func:`linear_smoothed_cross_entropy` keeps none of that: per chunk of
real rows it computes the logits in cache, reduces them to the loss and turns them into
the gradient at once.  All softmax arithmetic is in float32 whatever the GEMMs' dtype,
so bf16 training keeps an fp32 loss and softmax.

On the CPU that per-chunk step (bias, loss, gradient over the logits in place, its column sums
for ∂b) is one C++ kernel, kernels/smoothed_cross_entropy.cpp, which reads each row once
(a bf16 training step x1.10-1.12, docs/performance.md), and the bf16 weight gradient of each
chunk is added into its float32 sum by one MKL GEMM (pipeline/fast/mixed_gemm.py); elsewhere,
or without a compiler, :func:`_smoothed_cross_entropy` does it in torch ops.  Both agree to float rounding
(tests/unit/fast/test_fused_loss.py runs each).
"""

from __future__ import annotations

import torch

from pipeline.fast.cpu_kernels import cpu_kernels
from pipeline.fast.mixed_gemm import add_transposed_product
from pipeline.fast.registry import FastImpl, adopt, register
from pipeline.model.loss import SmoothedCrossEntropy

LINEAR_CHUNK_ROWS = 256  # rows of the fused output layer per chunk: [256, V] logits, 8 MB of fp32 at V = 8000


class _LinearSmoothedCrossEntropy(torch.autograd.Function):
    """Σ label-smoothed cross-entropy of (x Wᵀ + b) without materialising the [N, V] logits.

    The gradient is computed in the forward pass, chunk by chunk, while each chunk's logits
    are in cache, and kept: ∂x [N, R], ∂W [V, R] and ∂b [V] for a unit upstream gradient,
    which the backward pass only scales.  That is exact because the output is a scalar.
    ∂W and ∂b are accumulated over chunks in float32, whatever the compute dtype.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, target, smoothing, ignore_index, compute_dtype, need_grad, kernels):
        vocab = weight.shape[0]
        rows = (target != ignore_index).nonzero().squeeze(1)  # padding rows: no loss, no gradient
        xs, ys = x.index_select(0, rows).to(compute_dtype), target.index_select(0, rows)
        w = weight.to(compute_dtype)
        usable = x.device.type == "cpu" and compute_dtype in (torch.float32, torch.bfloat16)
        kernels = kernels if usable else None
        b = b_f = None  # the bias: in the GEMM (torch ops), or added in float32 by the kernel
        if bias is not None and kernels is not None:
            b_f = bias.float().contiguous()
        elif bias is not None:
            b = bias.to(compute_dtype)
        total = torch.zeros((), dtype=torch.float64 if kernels else torch.float32, device=x.device)
        dxs = dw = db = None
        if need_grad:
            dxs = torch.empty_like(xs)
            dw = torch.zeros(weight.shape, dtype=torch.float32, device=x.device)
            db = torch.zeros(vocab, dtype=torch.float32, device=x.device)
        with torch.autocast(x.device.type, enabled=False):
            for start in range(0, xs.shape[0], LINEAR_CHUNK_ROWS):
                chunk = slice(start, start + LINEAR_CHUNK_ROWS)
                x_c, y_c = xs[chunk], ys[chunk]
                logits = x_c @ w.t() if b is None else torch.addmm(b, x_c, w.t())
                if kernels is not None:  # loss; gradient over the logits, in place; its column sums into db
                    total += kernels.smoothed_cross_entropy(logits, y_c, smoothing, db, need_grad, b_f)
                    g = logits
                else:
                    loss, g = _smoothed_cross_entropy(logits, y_c, smoothing, db, need_grad)
                    total += loss
                if need_grad:
                    torch.mm(g, w, out=dxs[chunk])
                    if g.dtype == dw.dtype:  # fp32: accumulate inside the GEMM, no [V, R] temporary
                        dw.addmm_(g.t(), x_c)
                    elif kernels is not None:  # bf16 on the CPU: the same, by MKL (mixed_gemm.py)
                        add_transposed_product(dw, g, x_c)
                    else:
                        dw += (g.t() @ x_c).float()
        total = total.float()
        if need_grad:
            dx = torch.zeros(x.shape, dtype=x.dtype, device=x.device).index_copy_(0, rows, dxs.to(x.dtype))
            ctx.save_for_backward(dx, dw, db)
            ctx.has_bias = bias is not None
            ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total):
        dx, dw, db = ctx.saved_tensors
        g = grad_total.float()
        d_bias = (db * g).to(ctx.weight_dtype) if ctx.has_bias else None
        return (dx * g.to(dx.dtype), (dw * g).to(ctx.weight_dtype), d_bias, None, None, None, None, None, None)


def _smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float, d_bias: torch.Tensor | None, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of a chunk of logits [n, V] and its gradient in the logits' dtype, in torch ops (float32
    inside); the gradient's column sums are added into ``d_bias``.  The CPU kernel's twin."""
    vocab, dtype = logits.shape[1], logits.dtype
    logits, target = logits.float(), target.unsqueeze(1)
    lse = torch.logsumexp(logits, 1, keepdim=True)
    loss = (lse - (1.0 - smoothing) * logits.gather(1, target)).sum() - smoothing * logits.mean(1).sum()
    if not need_grad:
        return loss, None
    g = logits.sub_(lse).exp_().sub_(smoothing / vocab)  # softmax - ε/V - (1 - ε) onehot(y), in place
    g.scatter_add_(1, target, g.new_full(target.shape, -(1.0 - smoothing)))
    d_bias += g.sum(0)
    return loss, g.to(dtype)


def linear_smoothed_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    smoothing: float = 0.0,
    ignore_index: int = -100,
    kernels=None,
) -> torch.Tensor:
    """Σ over rows of the label-smoothed cross-entropy of ``F.linear(x, weight, bias)``; float32 scalar.

    Equals ``F.cross_entropy(F.linear(x, weight, bias), target, ignore_index=...,
    label_smoothing=smoothing, reduction="sum")`` (see the module docstring).

    ``x`` [N, R], ``weight`` [V, R], ``bias`` [V] or None, ``target`` [N] long.  Rows whose
    target is ``ignore_index`` are dropped before the GEMMs (no work spent on padding), and
    the [N, V] logits and their gradient are never stored: per chunk of rows the logits are
    computed, reduced to the loss and turned into ∂x, ∂W, ∂b at once.  Under autocast the
    GEMMs run in the autocast dtype and the softmax, loss and ∂W/∂b sums in float32.
    """
    if x.dim() != 2 or target.shape != x.shape[:1] or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"expected x [N, R], weight [V, R], target [N]; got {tuple(x.shape)}, {tuple(weight.shape)}, "
            f"{tuple(target.shape)}"
        )
    dev = x.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
    tensors = (x, weight) if bias is None else (x, weight, bias)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return _LinearSmoothedCrossEntropy.apply(
        x, weight, bias, target, float(smoothing), int(ignore_index), dtype, need_grad, kernels
    )


class FusedCrossEntropy(SmoothedCrossEntropy):
    """:class:`~pipeline.model.loss.SmoothedCrossEntropy` by :func:`linear_smoothed_cross_entropy`: the
    [N, V] logits are never stored and padding rows cost no output-layer work."""

    kernels = None

    @classmethod
    def from_reference(cls, reference: SmoothedCrossEntropy, device: torch.device) -> FusedCrossEntropy:
        fast = adopt(cls, reference)
        fast.kernels = cpu_kernels(device)
        return fast

    def forward(self, features, output, target, smoothing):
        return linear_smoothed_cross_entropy(
            features, output.weight, output.bias, target, smoothing, self.pad_id, self.kernels
        )


register(
    FastImpl(
        name="fused_output_loss",
        component="criterion",
        replaces=SmoothedCrossEntropy,
        summary="the output layer fused with the loss, chunk by chunk over the real rows (C++ kernel on the CPU)",
        devices=("cpu", "cuda"),
        covers=lambda m: (
            None if type(m) is SmoothedCrossEntropy else f"written for SmoothedCrossEntropy, not {type(m).__qualname__}"
        ),
        build=FusedCrossEntropy.from_reference,
    )
)
