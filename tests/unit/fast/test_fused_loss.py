"""The output layer fused with the label-smoothed cross-entropy equals F.linear + F.cross_entropy,
with the fused CPU kernel of the loss and with its torch-ops twin."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.fast.loss import LINEAR_CHUNK_ROWS, linear_smoothed_cross_entropy


def test_rejects_misshaped_input(kernels):
    with pytest.raises(ValueError, match="expected x"):
        linear_smoothed_cross_entropy(
            torch.zeros(2, 3, 4), torch.zeros(5, 4), None, torch.zeros(2, dtype=torch.long), kernels=kernels
        )


def _linear_case(n: int = 2 * LINEAR_CHUNK_ROWS + 9, dim: int = 12, vocab: int = 37, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    x, w, b = (
        torch.randn(n, dim, generator=g),
        torch.randn(vocab, dim, generator=g) * 0.5,
        torch.randn(vocab, generator=g),
    )
    target = torch.randint(1, vocab, (n,), generator=g)
    target[::5] = 0
    return x, w, b, target


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_output_layer_matches_linear_then_cross_entropy(smoothing, with_bias, kernels):
    x, w, b, target = _linear_case()
    ours_in = [t.clone().requires_grad_() for t in (x, w, b)]
    ref_in = [t.clone().requires_grad_() for t in (x, w, b)]
    bias, ref_bias = (ours_in[2], ref_in[2]) if with_bias else (None, None)
    ours = linear_smoothed_cross_entropy(
        ours_in[0], ours_in[1], bias, target, smoothing, ignore_index=0, kernels=kernels
    )
    logits = F.linear(ref_in[0], ref_in[1], ref_bias)
    ref = F.cross_entropy(logits, target, ignore_index=0, label_smoothing=smoothing, reduction="sum")
    (ours * 0.5).backward()
    (ref * 0.5).backward()
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=1e-6)
    for mine, theirs in zip(ours_in[: 3 if with_bias else 2], ref_in):
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-5, rtol=1e-5)
    assert ours_in[0].grad[::5].abs().max() == 0  # padding rows get no gradient


def test_fused_output_layer_under_bf16_autocast(kernels):
    """GEMMs in bf16, softmax and sums in fp32: within bf16 rounding of the fp32 result (measured ~0.5%)."""
    x, w, b, target = _linear_case(seed=3)
    ins = [t.clone().requires_grad_() for t in (x, w, b)]
    ref_in = [t.clone().requires_grad_() for t in (x, w, b)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = linear_smoothed_cross_entropy(*ins, target, 0.1, ignore_index=0, kernels=kernels)
    ref = F.cross_entropy(F.linear(*ref_in), target, ignore_index=0, label_smoothing=0.1, reduction="sum")
    ours.backward()
    ref.backward()
    assert ours.dtype == torch.float32
    assert abs(float(ours.detach()) - float(ref.detach())) < 0.01 * abs(float(ref.detach()))
    for mine, theirs in zip(ins, ref_in):
        assert mine.grad.dtype == theirs.dtype == torch.float32
        assert (mine.grad - theirs.grad).abs().max() < 0.02 * theirs.grad.abs().max()


def test_fused_output_layer_keeps_no_gradient_without_grad_mode(kernels):
    x, w, b, target = _linear_case()
    with torch.no_grad():
        loss = linear_smoothed_cross_entropy(x, w, b, target, 0.1, ignore_index=0, kernels=kernels)
    ref = F.cross_entropy(F.linear(x, w, b), target, ignore_index=0, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss, ref, atol=1e-3, rtol=1e-6)
    assert loss.grad_fn is None
