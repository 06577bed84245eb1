"""GRU decoder with Luong's attention placement (Luong, Pham & Manning 2015, eqs. 5-6; no input feeding).

Shapes as in :mod:`pipeline.model.decoder`: B sentences, T target positions, S source
positions, E = emb_dim, Hd = decoder hidden, C = 2He, R = readout_dim, V = vocabulary.

    s_0 = tanh(W_s h̄)                       as in the Bahdanau placement
    s_i = GRU(s_{i-1}, E y_{i-1})            the recurrence does not see the context ...
    c_i = context(s_i, h)                    ... so attention is queried with s_i, after the step
    h̃_i = tanh(W_c [c_i ; s_i])              the attentional hidden state (Luong eq. 5), R units
    p(y_i | ...) = softmax(W_o dropout(h̃_i)) W_o optionally tied to E (then R must equal E)

Because s_1..s_T depend only on the target prefix, teacher-forced :meth:`forward`
runs the recurrence as one fused ``nn.GRU`` call over the sequence (cuDNN on GPUs) and
then attends for all T steps in one batched call (:meth:`attend_all`); only search
(:meth:`step`) goes one step at a time.  Without Luong's input feeding (h̃_{i-1} as
an extra GRU input), which would serialise the recurrence again.

``model.decoder.readout`` and ``readout_state`` configure the Bahdanau placement's deep
output and do not apply here: h̃ is tanh of the current state and context, as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import InitState, ModelConfig
from pipeline.model.decoder import DecoderState, check_tied_output, gru_update, init_input_dim, initial_state
from pipeline.model.dropout import Dropout
from pipeline.model.encoder import EncoderOutput, run_fused_rnn
from pipeline.tokenizer import PAD_ID


class LuongDecoder(nn.Module):
    """Decoder whose attention (any score of :mod:`pipeline.model.attention`) is queried with s_i."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, context_module: nn.Module) -> None:
        super().__init__()
        d = cfg.decoder
        self.emb_dim, self.hidden_dim, self.readout_dim = cfg.emb_dim, d.hidden_dim, d.readout_dim
        check_tied_output(cfg)
        self.embedding = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.dropout = Dropout(cfg.dropout)
        self.context = context_module
        self.init_mode = InitState(d.init_state)
        self.W_s = nn.Linear(init_input_dim(cfg), d.hidden_dim)
        self.rnn = nn.GRU(cfg.emb_dim, d.hidden_dim, batch_first=True)
        self.W_c = nn.Linear(2 * cfg.encoder.hidden_dim + d.hidden_dim, d.readout_dim, bias=False)
        self.out = nn.Linear(d.readout_dim, vocab_size)  # W_o
        self.tied = d.tie_embeddings
        if self.tied:
            self.out.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As :class:`Decoder`: E ~ N(0, 1/E) with a zero PAD row, GRU input weights Xavier-uniform and
        recurrent weights orthogonal per gate block, W_s, W_c and an untied W_o Xavier-uniform, biases zero.
        """
        nn.init.normal_(self.embedding.weight, std=self.emb_dim**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        for block in self.rnn.weight_ih_l0.data.chunk(3, 0):
            nn.init.xavier_uniform_(block)
        for block in self.rnn.weight_hh_l0.data.chunk(3, 0):
            nn.init.orthogonal_(block)
        nn.init.zeros_(self.rnn.bias_ih_l0)
        nn.init.zeros_(self.rnn.bias_hh_l0)
        nn.init.xavier_uniform_(self.W_s.weight)
        nn.init.zeros_(self.W_s.bias)
        nn.init.xavier_uniform_(self.W_c.weight)
        if not self.tied:
            nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _query(self, s: torch.Tensor) -> torch.Tensor:
        """What the score takes: W_a s_i for additive attention, s_i itself for the multiplicative scores."""
        proj = self.context.query_projection
        return s if proj is None else proj(s)

    def _features(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """h̃ = tanh(W_c [c ; s]) -> dropout: the input of W_o [..., R]."""
        return self.dropout(torch.tanh(self.W_c(torch.cat([c.to(s.dtype), s], dim=-1))))

    def _project(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """(c, s) -> logits [..., V]."""
        return self.out(self._features(c, s))

    # ------------------------------------------------------------------ search API

    def start(self, enc: EncoderOutput) -> DecoderState:
        """Initial search state: s_0 and the precomputed keys."""
        return DecoderState(s=initial_state(self.W_s, enc, self.init_mode), enc=enc, keys=self.context.precompute(enc))

    def step(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step from y_{i-1} = ``prev_tokens`` [B] long: (logits [B, V], new state, α_i [B, S])."""
        ey = self.dropout(self.embedding(prev_tokens))
        gi = F.linear(ey, self.rnn.weight_ih_l0, self.rnn.bias_ih_l0)
        gh = F.linear(state.s, self.rnn.weight_hh_l0, self.rnn.bias_hh_l0)
        gh_rz, gh_n = gh.split([2 * self.hidden_dim, self.hidden_dim], 1)
        s = gru_update(gi, gh_rz, gh_n, state.s.to(gh_n.dtype))
        c, attn = self.context.attend(self._query(s), state.keys, state.enc)  # c_i from s_i
        return self._project(c, s), DecoderState(s=s, enc=state.enc, keys=state.keys), attn

    # ------------------------------------------------------------------ teacher forcing

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced decoding of ``tgt_in`` [B, T]: (logits [B, T, V], α [B, T, S] float32)."""
        t, attn = self.features(tgt_in, enc)
        return self.out(t), attn

    def features(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` up to the output layer W_o: (h̃_i after dropout [B, T, R], α [B, T, S]).

        Positions after a sentence's end see padding embeddings (zero), which is harmless:
        the recurrence is causal, so real positions never see them, and the loss masks them.
        """
        ey = self.dropout(self.embedding(tgt_in))  # [B, T, E]
        s0 = initial_state(self.W_s, enc, self.init_mode)
        s_seq, _ = run_fused_rnn(self.rnn, ey, s0.to(ey.dtype).unsqueeze(0))  # s_1..s_T [B, T, Hd], one call
        c, attn = self.context.attend_all(self._query(s_seq), self.context.precompute(enc), enc)
        return self._features(c, s_seq), attn
