"""GRU decoder with Luong's attention placement (Luong, Pham & Manning 2015, eqs. 5-6; no input feeding).

Shapes as in :mod:`pipeline.model.decoder`: B sentences, T target positions, S source
positions, E = emb_dim, Hd = decoder hidden, C = 2He, R = readout_dim, V = vocabulary.

    s_0 = tanh(W_s h̄)                       as in the Bahdanau placement
    s_i = GRU(s_{i-1}, E y_{i-1})            the recurrence does not see the context ...
    c_i = context(s_i, h)                    ... so attention is queried with s_i, after the step
    h̃_i = tanh(W_c [c_i ; s_i])              the attentional hidden state (Luong eq. 5), R units
    p(y_i | ...) = softmax(W_o dropout(h̃_i)) W_o optionally tied to E (then R must equal E)

Without Luong's input feeding (h̃_{i-1} as an extra GRU input).  ``model.decoder.readout`` and
``readout_state`` configure the Bahdanau placement's deep output and do not apply here.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.config import InitState, ModelConfig
from pipeline.model.decoder import DecoderState, StepDecoder, check_tied_output, init_embedding_, init_input_dim
from pipeline.model.encoder import init_rnn_


class LuongDecoder(StepDecoder):
    """Decoder whose attention (any attention module) is queried with s_i."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, context: nn.Module, pad_id: int) -> None:
        super().__init__()
        d = cfg.decoder
        self.emb_dim, self.hidden_dim, self.readout_dim = cfg.emb_dim, d.hidden_dim, d.readout_dim
        self.pad_id = pad_id
        check_tied_output(cfg)
        self.embedding = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(cfg.dropout)
        self.context = context
        self.init_mode = InitState(d.init_state)
        self.W_s = nn.Linear(init_input_dim(cfg), d.hidden_dim)
        self.cell = nn.GRUCell(cfg.emb_dim, d.hidden_dim)
        self.W_c = nn.Linear(2 * cfg.encoder.hidden_dim + d.hidden_dim, d.readout_dim, bias=False)
        self.out = nn.Linear(d.readout_dim, vocab_size)  # W_o
        self.tied = d.tie_embeddings
        if self.tied:
            self.out.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As :class:`~pipeline.model.decoder.Decoder`: E ~ N(0, 1/E) with a zero PAD row, the GRU as in
        :func:`~pipeline.model.encoder.init_rnn_`, W_s, W_c and an untied W_o Xavier-uniform, biases zero."""
        init_embedding_(self.embedding, self.pad_id)
        init_rnn_(self.cell)
        nn.init.xavier_uniform_(self.W_s.weight)
        nn.init.zeros_(self.W_s.bias)
        nn.init.xavier_uniform_(self.W_c.weight)
        if not self.tied:
            nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def attentional_state(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """h̃ = tanh(W_c [c ; s]) after dropout: the input of W_o [..., R] (Luong eq. 5)."""
        return self.dropout(torch.tanh(self.W_c(torch.cat([c.to(s.dtype), s], dim=-1))))

    def advance(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step from y_{i-1} = ``prev_tokens`` [B] long, up to W_o: (h̃_i [B, R], new state, α_i [B, S])."""
        ey = self.dropout(self.embedding(prev_tokens))
        s = self.cell(ey, state.s)  # s_i
        c, alpha = self.context(s, state.keys, state.enc, state.history)  # c_i from s_i
        history = None if state.history is None else state.history.after(alpha)
        return self.attentional_state(c, s), DecoderState(s, state.enc, state.keys, history), alpha
