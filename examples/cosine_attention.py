"""Cosine (content-based) attention, a score none of the built-ins covers, written against the
pipeline's attention interface.

    e_ij = β cos(W s_{i-1}, U h_j)        β > 0 learned (Graves et al. 2014, eq. 5: the key strength)
    α_i  = softmax_j(e_ij) over real positions

Stateless: no ``history``.  The normalised U h_j do not depend on the step, so ``precompute``
computes them once per batch.  Train it with no change to the package::

    PYTHONPATH=examples python -m pipeline.train model.attention_class=cosine_attention.CosineAttention \
        model.name=cosine experiment=quick run_dir=runs/cosine
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.attention import masked_softmax


class CosineAttention(nn.Module):
    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.W = nn.Linear(query_dim, attn_dim, bias=False)
        self.U = nn.Linear(key_dim, attn_dim, bias=False)
        self.log_beta = nn.Parameter(torch.tensor(math.log(5.0)))  # β starts at 5: cosines lie in [-1, 1]

    def precompute(self, states: torch.Tensor) -> torch.Tensor:
        """U h_j / |U h_j| [B, S, A]."""
        return F.normalize(self.U(states), dim=-1)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = F.normalize(self.W(query), dim=-1).to(keys.dtype)
        cosine = torch.bmm(keys, q.unsqueeze(2)).squeeze(2)  # [B, S]
        return masked_softmax(self.log_beta.exp() * cosine, mask)
