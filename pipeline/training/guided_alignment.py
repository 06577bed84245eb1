"""The guided-alignment loss (Chen et al. 2016, "Guided Alignment Training for Topic-Aware NMT").

Attention learns to look wherever helps the next word, which need not be the word it translates
(docs/results.md, the AER table).  Guided alignment adds, for each target piece with links, the
cross-entropy between the statistical aligner's links, row-normalised (A_i), and the attention
α_i the model computed to predict that piece:  -Σ_j A_ij log α_ij  (Marian's ``ce`` cost).  It is
summed here over the batch's linked rows; the trainer divides it, like the token loss, by the
update's target tokens and weighs it by ``train.guided_alignment.weight``.  It needs nothing of
the attention but its weights, so a user-defined attention (``model.attention_class``) on the
reference path is guided as well.
"""

from __future__ import annotations

import torch

EPS = 1e-9  # keeps log α finite where the attention is exactly 0 (padding, underflow)


def guided_alignment_loss(attention: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ over rows of -Σ_j targets_ij log attention_ij; both ``[B, T, S]``, rows of ``targets`` sum to 1 or 0."""
    if attention.shape != targets.shape:
        raise ValueError(f"attention {tuple(attention.shape)} and guided targets {tuple(targets.shape)} differ")
    return -(targets * torch.log(attention.float() + EPS)).sum()
