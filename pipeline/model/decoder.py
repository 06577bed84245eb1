"""GRU decoder with a context module and a deep (maxout) output (Bahdanau et al. 2015, eq. 4, appendix A.2.2).

Shapes: B sentences, T target positions, S source positions, E = emb_dim,
Hd = decoder hidden, C = 2He = context width, R = readout_dim, V = target vocabulary.

One step, from the previous word y_{i-1} and state s_{i-1} (:meth:`Decoder.advance`):

    c_i = context(s_{i-1}, h)                  attention (eqs. 5-6) or the fixed summary c (pipeline/model/context.py)
    s_i = GRU(s_{i-1}, [E y_{i-1} ; c_i])      eq. 4, gates r, z, n exactly as ``torch.nn.GRUCell``
    t̃_i = U_o s + V_o E y_{i-1} + C_o c_i      s = s_i (readout_state=current) or s_{i-1} (previous)
    t_i  = maxout_2(t̃_i)  or  tanh(t̃_i)        t̃ has 2R resp. R units
    p(y_i | ...) = softmax(W_o dropout(t_i))    W_o optionally tied to E (then R must equal E)

and before the first step s_0 = tanh(W_s h̄), h̄ = ←h_1 (init_state=first_backward) or the
masked mean of the h_j.  Search calls :meth:`Decoder.step` once per output word;
teacher-forced training (:meth:`Decoder.forward`) loops over the very same step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import UserError
from pipeline.model.attention import AttentionHistory
from pipeline.model.config import InitState, ModelConfig, Readout, ReadoutState
from pipeline.model.encoder import EncoderOutput


@dataclass
class DecoderState:
    """Where decoding stands after some steps.

    s        [B, Hd]  decoder state s_{i-1} (the query of the next step)
    enc               the encoder output the state attends to (rows aligned with ``s``)
    keys              ``context.precompute(enc)``: the attention's keys, or c [B, 2He] (fixed context)
    history           α_{i-1} and Σ α for an attention that takes ``history``, else None
    """

    s: torch.Tensor
    enc: EncoderOutput
    keys: torch.Tensor
    history: AttentionHistory | None = None

    def index_select(self, idx: torch.Tensor, same_source: bool = False) -> DecoderState:
        """Rows ``idx`` [B'] (long) of every tensor, including ``enc`` and ``keys`` (beam reorder / repeat).

        ``same_source``: row j and row idx[j] attend the same sentence (a beam reorder within
        groups), so ``enc`` and ``keys``, identical across a group, are kept without a copy.
        """
        history = None if self.history is None else self.history.index_select(idx)
        if same_source:
            return DecoderState(self.s.index_select(0, idx), self.enc, self.keys, history)
        return DecoderState(
            self.s.index_select(0, idx), self.enc.index_select(idx), self.keys.index_select(0, idx), history
        )


def initial_state(W_s: nn.Linear, enc: EncoderOutput, mode: InitState) -> torch.Tensor:
    """s_0 = tanh(W_s h̄) [B, Hd] (appendix A.2.2); h̄ = ←h_1 or the masked mean of h_j, by ``mode``."""
    if mode == InitState.first_backward:
        h = enc.first_backward
    else:  # masked mean; annotations are exactly 0 at padded positions
        h = enc.states.sum(1) / enc.mask.sum(1, keepdim=True).to(enc.states.dtype)
    return torch.tanh(W_s(h))


def check_tied_output(cfg: ModelConfig) -> None:
    """W_o can share the embedding matrix only when the layer before it is E wide."""
    rd = cfg.decoder.readout_dim
    if cfg.decoder.tie_embeddings and rd != cfg.emb_dim:
        raise UserError(
            f"model.decoder.readout_dim={rd} must equal model.emb_dim={cfg.emb_dim} when "
            "model.decoder.tie_embeddings is true (W_o shares the embedding matrix); "
            "set model.decoder.readout_dim to model.emb_dim or model.decoder.tie_embeddings=false"
        )


def init_input_dim(cfg: ModelConfig) -> int:
    """Width of h̄ in s_0 = tanh(W_s h̄): He for ←h_1, 2He for the mean of the annotations."""
    first = InitState(cfg.decoder.init_state) == InitState.first_backward
    return cfg.encoder.hidden_dim if first else 2 * cfg.encoder.hidden_dim


def init_embedding_(embedding: nn.Embedding, pad_id: int) -> None:
    """N(0, emb_dim^-1) with the PAD row zero."""
    nn.init.normal_(embedding.weight, std=embedding.embedding_dim**-0.5)
    with torch.no_grad():
        embedding.weight[pad_id].zero_()


def maxout_pairs(pre: torch.Tensor) -> torch.Tensor:
    """t [..., R] = max over adjacent pairs of ``pre`` [..., 2R] (maxout with 2 pieces, appendix A.2.2)."""
    return pre.unflatten(-1, (-1, 2)).amax(-1)


class StepDecoder(nn.Module):
    """What every decoder here shares, built on the subclass's :meth:`advance` (one step up to W_o):
    the state before the first step, the search's step, and teacher forcing as a loop over the
    same steps, so that what trains is what searches.  A subclass sets ``W_s``, ``init_mode``,
    ``context`` and ``out`` (W_o)."""

    def advance(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step from y_{i-1} = ``prev_tokens`` [B] long, up to W_o: (its features [B, R],
        the new state, α_i [B, S] float32 or None)."""
        raise NotImplementedError

    def start(self, enc: EncoderOutput) -> DecoderState:
        """The state before the first step: s_0, the context's keys, an empty attention history."""
        s0 = initial_state(self.W_s, enc, self.init_mode)
        return DecoderState(s0, enc, self.context.precompute(enc), self.context.start_history(enc))

    def step(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One search step: (logits [B, V], the new state, α_i [B, S] or None)."""
        t, state, alpha = self.advance(prev_tokens, state)
        return self.out(t), state, alpha

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing over ``tgt_in`` [B, T] (BOS + y without its last word), one :meth:`advance`
        per position: (features after dropout [B, T, R], α [B, T, S] float32 or None).  W_o and the
        loss are applied by the caller (:class:`~pipeline.model.seq2seq.Seq2Seq`)."""
        state = self.start(enc)
        features, weights = [], []
        for i in range(tgt_in.shape[1]):
            t, state, alpha = self.advance(tgt_in[:, i], state)
            features.append(t)
            weights.append(alpha)
        attn = torch.stack(weights, 1) if self.context.has_attention else None
        return torch.stack(features, 1), attn


class Decoder(StepDecoder):
    """Conditional GRU decoder; ``context`` is an :class:`~pipeline.model.context.AttentionContext`
    (RNNsearch) or a :class:`~pipeline.model.context.FixedContext` (the baseline)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, context: nn.Module, pad_id: int) -> None:
        super().__init__()
        d = cfg.decoder
        self.emb_dim, self.hidden_dim, self.context_dim = cfg.emb_dim, d.hidden_dim, 2 * cfg.encoder.hidden_dim
        self.pad_id = pad_id
        self.init_mode = InitState(d.init_state)
        self.readout_mode = Readout(d.readout)
        self.readout_state = ReadoutState(d.readout_state)
        check_tied_output(cfg)
        self.embedding = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(cfg.dropout)
        self.context = context
        self.W_s = nn.Linear(init_input_dim(cfg), d.hidden_dim)
        self.cell = nn.GRUCell(cfg.emb_dim + self.context_dim, d.hidden_dim)  # input [E y_{i-1} ; c_i]
        pieces = 2 if self.readout_mode == Readout.maxout else 1
        self.readout = nn.Linear(d.hidden_dim + cfg.emb_dim + self.context_dim, pieces * d.readout_dim)  # [U_o V_o C_o]
        self.out = nn.Linear(d.readout_dim, vocab_size)  # W_o
        self.tied = d.tie_embeddings
        if self.tied:
            self.out.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """All biases zero; E ~ N(0, 1/E) with the PAD row zero (also W_o when tied); the GRU's
        recurrent weight orthogonal and its E y and c input columns Xavier-uniform, per gate block;
        W_s, the readout and an untied W_o Xavier-uniform."""
        init_embedding_(self.embedding, self.pad_id)
        w_ih = self.cell.weight_ih.data
        for columns in w_ih.split([self.emb_dim, self.context_dim], 1):
            for block in columns.chunk(3, 0):
                nn.init.xavier_uniform_(block)
        for block in self.cell.weight_hh.data.chunk(3, 0):
            nn.init.orthogonal_(block)
        for lin in (self.W_s, self.readout):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        if not self.tied:
            nn.init.xavier_uniform_(self.out.weight)
        for b in (self.cell.bias_ih, self.cell.bias_hh, self.out.bias):
            nn.init.zeros_(b)

    def advance(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step from y_{i-1} = ``prev_tokens`` [B] long, up to W_o: (t_i after dropout [B, R],
        the new state, α_i [B, S] float32 or None)."""
        ey = self.dropout(self.embedding(prev_tokens))  # E y_{i-1} [B, E]
        c, alpha = self.context(state.s, state.keys, state.enc, state.history)  # c_i from s_{i-1} (eqs. 5-6)
        s = self.cell(torch.cat([ey, c.to(ey.dtype)], -1), state.s)  # s_i (eq. 4)
        t = self.deep_output(s if self.readout_state == ReadoutState.current else state.s, ey, c)
        history = None if state.history is None else state.history.after(alpha)
        return t, DecoderState(s, state.enc, state.keys, history), alpha

    def deep_output(self, s: torch.Tensor, ey: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """t_i after dropout [..., R] from t̃_i = U_o s + V_o E y_{i-1} + C_o c_i (appendix A.2.2)."""
        pre = self.readout(torch.cat([s, ey.to(s.dtype), c.to(s.dtype)], -1))
        t = maxout_pairs(pre) if self.readout_mode == Readout.maxout else torch.tanh(pre)
        return self.dropout(t)
