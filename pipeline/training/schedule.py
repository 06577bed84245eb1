"""Learning-rate schedule: linear warm-up, then reduce-on-plateau on validation BLEU.

One small object instead of two chained torch schedulers, because the two interact
(a plateau reduction must not be undone by the warm-up) and its whole state is three
numbers, which makes exact resume trivial.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class PlateauWarmup:
    """lr(step) = peak * min(1, step / warmup_steps); ``peak`` falls by ``factor`` on a BLEU plateau.

    ``observe(bleu)`` is called once per scheduled validation: after ``patience``
    validations without a new best, ``peak`` is multiplied by ``factor`` (never below
    ``min_lr``) and the count starts again.
    """

    peak: float
    warmup_steps: int
    factor: float
    patience: int
    min_lr: float
    best: float = -math.inf
    bad: int = 0

    def lr(self, step: int) -> float:
        """Learning rate for update number ``step`` (1-based)."""
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return self.peak * step / self.warmup_steps
        return self.peak

    def observe(self, bleu: float) -> bool:
        """Record a validation BLEU; True if the learning rate was just reduced."""
        if bleu > self.best:
            self.best, self.bad = bleu, 0
            return False
        self.bad += 1
        if self.bad < self.patience:
            return False
        self.bad = 0
        reduced = max(self.peak * self.factor, self.min_lr)
        changed = reduced < self.peak
        self.peak = reduced
        return changed

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
