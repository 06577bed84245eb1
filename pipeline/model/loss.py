"""The training loss: label-smoothed cross-entropy of the output layer over the real target tokens.

With smoothing ε over V classes (Szegedy et al. 2016; the definition of
``torch.nn.functional.cross_entropy``) one position with logits x = W_o t_i + b_o and
target y costs  ℓ = (1 - ε) (-log p_y) + ε/V Σ_v (-log p_v).  Padding positions cost nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SmoothedCrossEntropy(nn.Module):
    """Σ over real target tokens of ℓ (above), float32; a module without parameters, so that a faster
    twin (pipeline/fast/loss.py) can take its place without touching a checkpoint."""

    def __init__(self, pad_id: int) -> None:
        super().__init__()
        self.pad_id = pad_id

    def forward(
        self, features: torch.Tensor, output: nn.Linear, target: torch.Tensor, smoothing: float
    ) -> torch.Tensor:
        """``features`` [N, R] (t_i), ``output`` the layer W_o, ``target`` [N] long (PAD where none)."""
        logits = output(features).float()  # the softmax in float32 whatever the compute dtype
        return F.cross_entropy(logits, target, ignore_index=self.pad_id, label_smoothing=smoothing, reduction="sum")
