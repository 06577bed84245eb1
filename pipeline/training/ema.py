"""An exponential moving average of the weights during training (``train.ema.decay``).

Why: Adam's last iterate jitters around a minimum; the average of the recent iterates
sits nearer its centre and usually translates better, at the cost of one more copy of
the parameters and an element-wise update per step (Polyak and Juditsky 1992; Marian's
``--exponential-smoothing``, fairseq's ``--ema-decay``).  After every update

    theta_ema <- d_t * theta_ema + (1 - d_t) * theta,   d_t = min(decay, (1 + t) / (10 + t))

where ``t`` is the number of updates taken.  The warm-up of ``d_t`` (TensorFlow's
``ExponentialMovingAverage(num_updates=...)``) keeps the average from being dominated by
the random initial weights in a short run: with ``decay=0.9999`` and no warm-up, after 2,000
updates 82% of the average would still be the initialisation.

The average is kept in float32 beside the parameters, saved in every checkpoint (``ema``)
and restored on resume, so a resumed run's average is bit-identical to an uninterrupted
one's.  With ``train.ema.validate`` the validations (and so ``best.pt`` and early stopping)
score the averaged weights, and the checkpoint names them as its decoding weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def ema_decay(decay: float, updates: int) -> float:
    """The decay used after ``updates`` updates: ``decay``, lowered early in training (see above)."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """The moving average of ``model``'s parameters (its buffers are taken as they are when saved).

    A tied parameter (the decoder's embedding and output matrix) is averaged once and saved
    under each of its names."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = model
        self.decay = decay
        self.names = [name for name, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.shadow = [p.detach().float().clone() for p in self.params]

    @torch.no_grad()
    def update(self, updates: int) -> None:
        """Fold the current parameters in, after the ``updates``-th update."""
        weight = 1.0 - ema_decay(self.decay, updates)
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A full state dict of the model with the averaged parameters (loadable by ``load_state_dict``)."""
        index = {id(p): i for i, p in enumerate(self.params)}  # tied weights: every name of a parameter
        averaged = {n: self.shadow[index[id(p)]] for n, p in self.model.named_parameters(remove_duplicate=False)}
        return {k: averaged[k].clone() if k in averaged else v.clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks {missing[0]}")
        with torch.no_grad():
            for name, shadow in zip(self.names, self.shadow):
                shadow.copy_(state[name])

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones again after it."""
        with torch.no_grad():
            kept = [p.detach().clone() for p in self.params]
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, k in zip(self.params, kept):
                    p.copy_(k)
