"""Where the decoder's context c_i comes from: attention (RNNsearch) or a fixed summary (the baseline).

Both context modules answer the same two calls, so a decoder never knows which one it holds::

    keys = context.precompute(enc)                               # once per batch
    c_i, weights = context(query, keys, enc, history)            # once per decoder step

RNNsearch (Bahdanau et al. 2015, eq. 5): c_i = Σ_j α_ij h_j, with α_i from any attention of
:mod:`pipeline.model.attention`.  The RNN encoder-decoder baseline (appendix A.2.2): RNNsearch
"becomes RNN Encoder-Decoder if we fix c_i"; here c = [→h_{T_x} ; ←h_1] for every step, so the
two models differ only in this module.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.attention import AttentionHistory, takes_history
from pipeline.model.encoder import EncoderOutput


class AttentionContext(nn.Module):
    """c_i = Σ_j α_ij h_j (eq. 5) with α_i = ``attention(query, keys, mask[, history])``.

    Returns (context [B, 2He] in the annotations' dtype, α_i [B, S] float32).
    """

    has_attention = True

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.attention = attention
        self.wants_history = takes_history(attention)

    def precompute(self, enc: EncoderOutput) -> torch.Tensor:
        """The attention's keys for this batch (its ``precompute``, else the annotations)."""
        precompute = getattr(self.attention, "precompute", None)
        return enc.states if precompute is None else precompute(enc.states)

    def start_history(self, enc: EncoderOutput) -> AttentionHistory | None:
        """Zeros for the first step if the attention takes ``history``, else None."""
        return AttentionHistory.start(enc.mask) if self.wants_history else None

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, enc: EncoderOutput, history: AttentionHistory | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        extra = {} if history is None else {"history": history}
        weights = self.attention(query, keys, enc.mask, **extra).float()
        context = torch.bmm(weights.to(enc.states.dtype).unsqueeze(1), enc.states).squeeze(1)
        return context, weights


class FixedContext(nn.Module):
    """The RNN encoder-decoder baseline: c_i = c = [→h_{T_x} ; ←h_1] (``enc.summary``) at every step.

    No parameters and no attention weights (None).
    """

    has_attention = False
    wants_history = False

    def precompute(self, enc: EncoderOutput) -> torch.Tensor:
        """The fixed context c [B, 2He]."""
        return enc.summary

    def start_history(self, enc: EncoderOutput) -> None:
        return None

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, enc: EncoderOutput, history: None = None
    ) -> tuple[torch.Tensor, None]:
        return keys, None
