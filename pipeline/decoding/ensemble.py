"""Ensemble decoding: several models searched as one (``checkpoint=[A,B,...]``).

Why: models trained from different seeds make partly independent errors, and combining
their next-token distributions at every step is the most reliable gain there is at
decoding time (Marian's and Sockeye's ensembles, OpenNMT-py's ``-models``).

:class:`Ensemble` is a model for :mod:`pipeline.decoding.search` like any other: it
encodes the source once per member, steps every member, and returns as its "logits" the
mean of the members' log-probabilities,

    log p(y_i | ...) = log_softmax( (1/M) sum_m log p_m(y_i | ...) ),

a log-linear combination (Marian's, with equal weights) that the searches' own
log-softmax renormalises per step.  (fairseq averages the probabilities instead.)
Attention, for alignments and plots, is the mean of the weights of the members that have
attention; a member without it (the fixed-context baseline) still votes on the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class EnsembleState:
    """One decoder state per member, reordered together."""

    members: list[Any]

    def index_select(self, idx: torch.Tensor, same_source: bool = False) -> EnsembleState:
        return EnsembleState([s.index_select(idx, same_source=same_source) for s in self.members])


class Ensemble(nn.Module):
    """The step-wise interface of :class:`~pipeline.model.seq2seq.Seq2Seq` over ``members`` (same vocabularies)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.train(any(m.training for m in members))  # the members' mode (a new Module would say training)

    @property
    def has_attention(self) -> bool:
        return any(m.has_attention for m in self.members)

    def forward(
        self, src: torch.Tensor, src_lens: torch.Tensor, tgt_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing (forced decoding of a reference, for alignments): (mean log-probabilities
        [B, T, V], mean attention [B, T, S] of the members with attention, or None)."""
        return combine([member(src, src_lens, tgt_in) for member in self.members])

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> list[Any]:
        return [m.encode(src, src_lens) for m in self.members]

    def start(self, enc: list[Any]) -> EnsembleState:
        return EnsembleState([m.start(e) for m, e in zip(self.members, enc)])

    def step(
        self, prev_tokens: torch.Tensor, state: EnsembleState
    ) -> tuple[torch.Tensor, EnsembleState, torch.Tensor | None]:
        """(mean log-probabilities [B, V] float32, new state, mean attention [B, S] or None)."""
        steps = [m.step(prev_tokens, s) for m, s in zip(self.members, state.members)]
        log_probs, attention = combine([(logits, attn) for logits, _, attn in steps])
        return log_probs, EnsembleState([new_state for _, new_state, _ in steps]), attention


def combine(outputs: list[tuple[torch.Tensor, torch.Tensor | None]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The members' (logits, attention or None) as (mean log-probabilities in float32, mean attention of
    the members that have one, or None)."""
    log_probs = torch.stack([F.log_softmax(logits.float(), dim=-1) for logits, _ in outputs]).mean(dim=0)
    weights = [attn.float() for _, attn in outputs if attn is not None]
    return log_probs, torch.stack(weights).mean(dim=0) if weights else None
