"""pipeline.model.dropout: inverted dropout with 16-bit random pieces on the CPU."""

from __future__ import annotations

import pytest
import torch

from pipeline.model.dropout import Dropout, dropout

N = 1 << 20


def test_identity_when_not_training_or_p_zero():
    x = torch.randn(3, 5)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    assert Dropout(0.3).eval()(x) is x


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_drop_rate_and_expectation(p):
    """Every one of the four 16-bit pieces of a random word drops at rate p (a biased piece,
    e.g. a sign bit that is never set, would show here), and the output's mean is the input's."""
    torch.manual_seed(0)
    out = dropout(torch.ones(N), p, training=True)
    dropped = (out == 0).float()
    sd = (p * (1 - p) / (N / 4)) ** 0.5
    for piece in dropped.view(-1, 4).mean(0):
        assert abs(float(piece) - p) < 5 * sd
    assert abs(float(out.mean()) - 1.0) < 5 * (p / (1 - p) / N) ** 0.5
    kept = out[out != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 65536 / (65536 - round(p * 65536))))


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    out = dropout(x, 0.25, training=True)
    out.sum().backward()
    mask = (out != 0).float()
    torch.testing.assert_close(x.grad, mask * (65536 / (65536 - 16384)))


def test_seeded_and_bf16():
    x = torch.randn(200, 7).to(torch.bfloat16)
    torch.manual_seed(5)
    a = dropout(x, 0.2, training=True)
    torch.manual_seed(5)
    b = dropout(x, 0.2, training=True)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)
    assert not torch.equal(a, dropout(x, 0.2, training=True))
