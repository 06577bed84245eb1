"""pipeline.fast.dropout: inverted dropout with 16-bit random pieces on the CPU, by torch ops
and by the fused CPU kernel (kernels/dropout.cpp), and the decoder's fused maxout + dropout."""

from __future__ import annotations

import pytest
import torch

from pipeline.fast.dropout import Dropout, dropout, maxout_dropout
from pipeline.model.decoder import maxout_pairs

N = 1 << 20


def _scale(p: float) -> float:
    return 65536 / (65536 - round(p * 65536))


@pytest.mark.parametrize("p", [1.0, 1 - 2**-18])
def test_everything_dropped_at_p_one(p, kernels):
    """p = 1, or so close to it that 2^16 pieces round to all dropped: zeros, and no division by zero."""
    x = torch.randn(8, 16, requires_grad=True)
    assert torch.equal(dropout(x, p, training=True, kernels=kernels), torch.zeros(8, 16))
    assert torch.equal(maxout_dropout(x, p, training=True, kernels=kernels), torch.zeros(8, 8))


def test_identity_when_not_training_or_p_zero(kernels):
    x = torch.randn(3, 5)
    assert dropout(x, 0.3, training=False, kernels=kernels) is x
    assert dropout(x, 0.0, training=True, kernels=kernels) is x
    assert Dropout(0.3, kernels).eval()(x) is x


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_drop_rate_and_expectation(p, kernels):
    """Every one of the four 16-bit pieces of a random word drops at rate p (a biased piece,
    e.g. a sign bit that is never set, would show here), and the output's mean is the input's."""
    torch.manual_seed(0)
    out = dropout(torch.ones(N), p, training=True, kernels=kernels)
    dropped = (out == 0).float()
    sd = (p * (1 - p) / (N / 4)) ** 0.5
    for piece in dropped.view(-1, 4).mean(0):
        assert abs(float(piece) - p) < 5 * sd
    assert abs(float(out.mean()) - 1.0) < 5 * (p / (1 - p) / N) ** 0.5
    kept = out[out != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, _scale(p)))


def test_neighbouring_elements_drop_independently(kernels):
    """Pairs of adjacent elements (within one random word, and across words) are both dropped
    at rate p^2, as independent draws would be."""
    torch.manual_seed(3)
    dropped = dropout(torch.ones(N), 0.5, training=True, kernels=kernels) == 0
    for lag in (1, 4):
        both = float((dropped[:-lag] & dropped[lag:]).float().mean())
        assert abs(both - 0.25) < 5 * (0.25 * 0.75 / N) ** 0.5


def test_gradient_is_the_mask_times_the_scale(kernels):
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    out = dropout(x, 0.25, training=True, kernels=kernels)
    out.sum().backward()
    mask = (out != 0).float()
    torch.testing.assert_close(out, x.detach() * mask * _scale(0.25))
    torch.testing.assert_close(x.grad, mask * _scale(0.25))


def test_seeded_and_bf16(kernels):
    x = torch.randn(200, 7).to(torch.bfloat16)
    torch.manual_seed(5)
    a = dropout(x, 0.2, training=True, kernels=kernels)
    torch.manual_seed(5)
    b = dropout(x, 0.2, training=True, kernels=kernels)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)
    assert not torch.equal(a, dropout(x, 0.2, training=True, kernels=kernels))


def test_the_mask_does_not_depend_on_the_number_of_threads(kernels):
    x = torch.randn(300, 512)
    before = torch.get_num_threads()
    masks = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(7)
            masks.append(dropout(x, 0.2, training=True, kernels=kernels) == 0)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(masks[0], masks[1])


def _routed_to_the_winner(pre: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The maxout's gradient [..., 2R]: each output's to its pair's winner, the first on a tie
    (bf16 rounding makes ties common; amax would split them in halves)."""
    pairs = pre.detach().unflatten(-1, (-1, 2))
    first = pairs[..., 0] >= pairs[..., 1]
    zero = grad.new_zeros(())
    return torch.stack([torch.where(first, grad, zero), torch.where(first, zero, grad)], -1).flatten(-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_maxout_without_dropout_equals_maxout_pairs(dtype, kernels):
    """Eval mode (and p = 0): exactly the maxout of appendix A.2.2, forward and backward."""
    pre = torch.randn(5, 7, 64).to(dtype).requires_grad_()
    grad = torch.randn(5, 7, 32).to(dtype)
    out = maxout_dropout(pre, 0.3, training=False, kernels=kernels)
    assert out.dtype == dtype and torch.equal(out, maxout_pairs(pre.detach()))
    out.backward(grad)
    assert torch.equal(pre.grad, _routed_to_the_winner(pre, grad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_maxout_dropout_is_dropout_of_the_maxout(dtype, kernels):
    """Training: each output is its pair's maximum times the scale, or 0 at rate p; the gradient
    goes to the pair's winner, times the scale, and nowhere where the output was dropped."""
    torch.manual_seed(2)
    p = 0.25
    pre = torch.randn(64, 1024, dtype=torch.float32).to(dtype).requires_grad_()
    out = maxout_dropout(pre, p, training=True, kernels=kernels)
    kept = out != 0
    assert abs(float((~kept).float().mean()) - p) < 5 * (p * (1 - p) / kept.numel()) ** 0.5
    winner = maxout_pairs(pre.detach())
    torch.testing.assert_close(out, (winner.float() * kept * _scale(p)).to(dtype), rtol=0, atol=0)
    grad = torch.randn(out.shape).to(dtype)
    out.backward(grad)
    expected = _routed_to_the_winner(pre, (grad.float() * kept * _scale(p)).to(dtype))
    torch.testing.assert_close(pre.grad, expected, rtol=0, atol=0)
