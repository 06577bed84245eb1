"""The fused label-smoothed cross-entropy equals torch's, in value and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.loss import CHUNK_ROWS, smoothed_cross_entropy


def _case(n: int = 3 * CHUNK_ROWS + 5, vocab: int = 37, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, vocab, generator=g) * 3
    target = torch.randint(1, vocab, (n,), generator=g)
    target[::7] = 0  # padding positions, ignored
    return logits, target


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_matches_torch_in_fp32(smoothing):
    logits, target = _case()
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    ours = smoothed_cross_entropy(a, target, smoothing, ignore_index=0)
    ref = F.cross_entropy(b, target, ignore_index=0, label_smoothing=smoothing, reduction="sum")
    (ours * 0.5).backward()
    (ref * 0.5).backward()
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=0)
    assert a.grad[::7].abs().max() == 0  # ignored rows get no gradient


def test_bf16_logits_give_fp32_loss_and_bf16_grad():
    """Under bf16 the loss is computed in fp32 from the bf16 logits; the gradient is rounded once, to bf16."""
    logits, target = _case(seed=1)
    low = logits.bfloat16().requires_grad_()
    ref_in = low.detach().float().requires_grad_()
    ours = smoothed_cross_entropy(low, target, 0.1, ignore_index=0)
    ref = F.cross_entropy(ref_in, target, ignore_index=0, label_smoothing=0.1, reduction="sum")
    ours.backward()
    ref.backward()
    assert ours.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=1e-6)
    torch.testing.assert_close(low.grad.float(), ref_in.grad, atol=4e-3, rtol=8e-3)  # bf16 rounding of the gradient


def test_rejects_misshaped_input():
    with pytest.raises(ValueError, match="expected logits"):
        smoothed_cross_entropy(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))
