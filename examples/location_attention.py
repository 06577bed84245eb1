"""Location-aware attention (Chorowski et al. 2015, eqs. 8-9), written against the pipeline's attention interface.

    f_i  = F * α_{i-1}                                   k filters of width r over the previous weights
    e_ij = wᵀ tanh(W s_{i-1} + V h_j + U f_ij + b)        (eq. 9)
    α_i  = softmax_j(e_ij) over real positions

It takes ``history``, so the decoder hands it α_{i-1} (zeros at the first step): where the
model looked last tells it where to look next, which keeps the attention moving forward.
Train it with no change to the package::

    PYTHONPATH=examples python -m pipeline.train model.attention_class=location_attention.LocationAwareAttention \
        model.name=location experiment=quick run_dir=runs/location
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.attention import AttentionHistory, masked_softmax


class LocationAwareAttention(nn.Module):
    def __init__(self, query_dim: int, key_dim: int, attn_dim: int, filters: int = 8, width: int = 5) -> None:
        super().__init__()
        self.W = nn.Linear(query_dim, attn_dim, bias=False)
        self.V = nn.Linear(key_dim, attn_dim)  # its bias is eq. 9's b
        self.F = nn.Conv1d(1, filters, width, padding=width // 2, bias=False)
        self.U = nn.Linear(filters, attn_dim, bias=False)
        self.w = nn.Linear(attn_dim, 1, bias=False)

    def precompute(self, states: torch.Tensor) -> torch.Tensor:
        """V h_j + b [B, S, A]: it does not depend on the step."""
        return self.V(states)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor, history: AttentionHistory
    ) -> torch.Tensor:
        location = self.F(history.previous.unsqueeze(1).to(keys.dtype)).transpose(1, 2)  # f_i [B, S, k]
        energies = self.w(torch.tanh(keys + self.W(query).unsqueeze(1) + self.U(location))).squeeze(-1)
        return masked_softmax(energies, mask)
