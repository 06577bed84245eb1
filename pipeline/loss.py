"""Label-smoothed cross-entropy over the vocabulary, fused and chunked for speed.

With smoothing ε over V classes (the definition of ``torch.nn.functional.cross_entropy``)
the loss of one position with logits x and target y is

    ℓ = (1 - ε) (-log p_y) + ε/V Σ_v (-log p_v)  =  lse(x) - (1 - ε) x_y - ε mean_v(x_v)

and its gradient is  ∂ℓ/∂x_v = softmax(x)_v - (1 - ε) [v = y] - ε/V.

``F.cross_entropy`` materialises log_softmax of the whole [N, V] logit matrix (N = B·T,
about 4096 x 8000 here), then an [N, V] zero-filled NLL gradient, then the softmax
backward, and under bf16 autocast an fp32 copy of the logits and its cast back: five
passes over a 128 MB matrix per step.  :func:`smoothed_cross_entropy` reads the logits in
row chunks that fit in cache, keeps only the log-sum-exp per row for the backward, and
writes the gradient once, in the logits' dtype.  All arithmetic is in float32 whatever
the logits' dtype, so bf16 training keeps an fp32 loss and softmax.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 64  # 64 rows x 8000 classes x 4 bytes = 2 MB of fp32 per chunk: about an L2's worth


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, smoothing: float, ignore_index: int):
        n = logits.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        valid = target != ignore_index
        safe_target = torch.where(valid, target, 0).unsqueeze(1)
        losses = torch.empty(n, dtype=torch.float32, device=logits.device)
        for start in range(0, n, CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            x = logits[rows].float()
            row_lse = torch.logsumexp(x, 1)
            lse[rows] = row_lse
            x_y = x.gather(1, safe_target[rows]).squeeze(1)
            losses[rows] = row_lse - (1.0 - smoothing) * x_y - smoothing * x.mean(1)
        ctx.save_for_backward(logits, safe_target, valid, lse)
        ctx.smoothing = smoothing
        return torch.where(valid, losses, 0.0).sum()

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        logits, safe_target, valid, lse = ctx.saved_tensors
        eps = ctx.smoothing
        n, vocab = logits.shape
        scale = torch.where(valid, grad_total.float(), 0.0).unsqueeze(1)  # [N, 1]; ignored rows get 0
        grad = torch.empty_like(logits)
        for start in range(0, n, CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            g = torch.exp(logits[rows].float() - lse[rows].unsqueeze(1))  # softmax(x)
            g.sub_(eps / vocab)
            g.scatter_add_(1, safe_target[rows], g.new_full((g.shape[0], 1), -(1.0 - eps)))
            grad[rows] = g.mul_(scale[rows])
        return grad, None, None, None


def smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0, ignore_index: int = -100
) -> torch.Tensor:
    """Sum over positions of the label-smoothed cross-entropy; float32 scalar.

    ``logits`` [N, V] in any float dtype (the gradient comes back in that dtype);
    ``target`` [N] long; positions whose target is ``ignore_index`` add nothing and get
    zero gradient.  Equals ``F.cross_entropy(logits.float(), target, ignore_index=...,
    label_smoothing=smoothing, reduction="sum")`` (see the module docstring).
    """
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"expected logits [N, V] and target [N], got {tuple(logits.shape)} and {tuple(target.shape)}")
    return _SmoothedCrossEntropy.apply(logits, target, float(smoothing), int(ignore_index))
