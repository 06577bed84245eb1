"""GRU decoder with a pluggable context module and a deep (maxout) output (Bahdanau et al. 2015).

Shapes: B sentences, T target positions, S source positions, E = emb_dim,
Hd = decoder hidden, C = 2He = context width, R = readout_dim, V = target vocabulary.

Recurrence (eq. 4, appendix A.2.2), with c_i computed from the query s_{i-1}:

    s_0 = tanh(W_s h̄)                         h̄ = ←h_1 (init_state=first_backward) or the masked mean of h_j
    c_i = context(s_{i-1}, h)                  attention (eqs. 5-6) or the fixed summary c
    s_i = GRU(s_{i-1}, [E y_{i-1} ; c_i])      gates r, z, n exactly as ``torch.nn.GRUCell``

Deep output (A.2.2):

    t̃_i = U_o s + V_o E y_{i-1} + C_o c_i      s = s_i (readout_state=current) or s_{i-1} (previous)
    t_i  = maxout_2(t̃_i)  or  tanh(t̃_i)        t̃ has 2R resp. R units
    p(y_i | ...) = softmax(W_o dropout(t_i))    W_o optionally tied to E (then R must equal E)

Teacher-forced :meth:`Decoder.forward` is written for throughput: W_ie E y for all
steps is one GEMM before the loop; the loop itself is :func:`gru_recurrence`
(pipeline/model/recurrence.py), one autograd function with a hand-written backward
whose steps do only the query-dependent work (W_hh s_{i-1} fused with the attention's
W_a s_{i-1} into one GEMM, attention, W_ic c_i, gate arithmetic) and whose weight
gradients are one GEMM over all steps; the deep output and vocabulary projection of
all steps are batched after the loop.  With a static context (the baseline) W_ic c and
C_o c are computed once.  :meth:`Decoder.step` computes the same function one step
at a time for search, with plain autograd ops: the reference the fused path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import InitState, ModelConfig, Readout, ReadoutState
from pipeline.errors import UserError
from pipeline.model.dropout import Dropout, by_kernel, dropout, dropped_pieces, kernels_for
from pipeline.model.encoder import EncoderOutput
from pipeline.model.linear import linear
from pipeline.model.recurrence import ADDITIVE, DOT, gru_recurrence
from pipeline.tokenizer import PAD_ID


@dataclass
class DecoderState:
    """Search state after some steps.

    s    [B, Hd]   decoder state s_{i-1} (the query of the next step)
    enc            the encoder output the state attends to (rows aligned with ``s``)
    keys           ``context.precompute(enc)``: U_a h [B, S, A] (attention) or c [B, 2He] (fixed)
    """

    s: torch.Tensor
    enc: EncoderOutput
    keys: torch.Tensor

    def index_select(self, idx: torch.Tensor, same_source: bool = False) -> DecoderState:
        """Rows ``idx`` [B'] (long) of every tensor, including ``enc`` and ``keys`` (beam reorder / repeat).

        ``same_source``: row j and row idx[j] attend the same sentence (a beam reorder within
        groups), so ``enc`` and ``keys``, identical across a group, are kept without a copy.
        """
        if same_source:
            return DecoderState(s=self.s.index_select(0, idx), enc=self.enc, keys=self.keys)
        return DecoderState(
            s=self.s.index_select(0, idx),
            enc=self.enc.index_select(idx),
            keys=self.keys.index_select(0, idx),
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


def gru_update(gi: torch.Tensor, gh_rz: torch.Tensor, gh_n: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """GRU update from the input part ``gi`` [B, 3Hd] and recurrent parts ``gh_rz`` [B, 2Hd], ``gh_n`` [B, Hd].

    Gate order r, z, n as in ``torch.nn.GRUCell``:
    r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r ⊙ gh_n), s' = (1 - z) ⊙ n + z ⊙ s.
    (``split`` rather than slicing: its backward is one cat, not a zero-fill per slice.)
    """
    hd = gh_n.shape[-1]
    gi_rz, gi_n = gi.split([2 * hd, hd], 1)
    r, z = torch.sigmoid(gi_rz + gh_rz).chunk(2, 1)
    n = torch.tanh(torch.addcmul(gi_n, r, gh_n))
    return torch.lerp(n, s, z)


class _MaxoutPairs(torch.autograd.Function):
    """max(t̃_2k, t̃_2k+1) for every k (the maxout of appendix A.2.2).  ``amax``'s backward
    compares the input with the output again and divides by the tie count; here the forward
    keeps which of each pair won (one bool per output) and the backward routes the gradient
    there (ties, of measure zero, go to the first)."""

    @staticmethod
    def forward(ctx, pre):
        pairs = pre.unflatten(-1, (-1, 2))
        first = pairs[..., 0] >= pairs[..., 1]
        ctx.save_for_backward(first)
        return torch.where(first, pairs[..., 0], pairs[..., 1])

    @staticmethod
    def backward(ctx, grad):
        (first,) = ctx.saved_tensors
        zero = grad.new_zeros(())
        return torch.stack([torch.where(first, grad, zero), torch.where(first, zero, grad)], -1).flatten(-2)


def maxout_pairs(pre: torch.Tensor) -> torch.Tensor:
    """t [..., R] = max over adjacent pairs of ``pre`` [..., 2R] (maxout with 2 pieces, appendix A.2.2)."""
    return _MaxoutPairs.apply(pre)


def maxout_dropout(pre: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``dropout(maxout_pairs(pre), p, training)``: by one fused CPU kernel where it is built
    (float32/bf16 on the CPU), which draws its mask as :func:`pipeline.model.dropout.dropout` does."""
    dropped = dropped_pieces(p) if training else 0
    kernels = kernels_for(pre, dropped)
    if kernels is None:
        return dropout(maxout_pairs(pre), p, training)
    return by_kernel(pre, dropped, kernels.maxout_dropout_forward, kernels.maxout_dropout_backward)


class Decoder(nn.Module):
    """Conditional GRU decoder; ``context_module`` is :class:`BahdanauAttention` or :class:`FixedContext`."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, context_module: nn.Module) -> None:
        super().__init__()
        d = cfg.decoder
        self.emb_dim = cfg.emb_dim
        self.hidden_dim = hd = d.hidden_dim
        self.context_dim = cd = 2 * cfg.encoder.hidden_dim
        self.readout_dim = rd = d.readout_dim
        self._rz_n = [2 * hd, hd]
        self.init_mode = InitState(d.init_state)
        self.readout_mode = Readout(d.readout)
        self.readout_state = ReadoutState(d.readout_state)
        check_tied_output(cfg)
        self.embedding = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.dropout = Dropout(cfg.dropout)
        self.context = context_module
        self.W_s = nn.Linear(init_input_dim(cfg), hd)
        # GRU(s_{i-1}, [E y ; c]) with the input weight split into its E y and c columns.
        self.weight_ie = nn.Parameter(torch.empty(3 * hd, cfg.emb_dim))
        self.weight_ic = nn.Parameter(torch.empty(3 * hd, cd))
        self.bias_ih = nn.Parameter(torch.empty(3 * hd))
        self.weight_hh = nn.Parameter(torch.empty(3 * hd, hd))
        self.bias_hh = nn.Parameter(torch.empty(3 * hd))
        # Deep output: readout.weight = [U_o | V_o | C_o], columns for s, E y, c.
        pieces = 2 if self.readout_mode == Readout.maxout else 1
        self.readout = nn.Linear(hd + cfg.emb_dim + cd, pieces * rd)
        self.out = nn.Linear(rd, vocab_size)  # W_o
        self.tied = d.tie_embeddings
        if self.tied:
            self.out.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialisation (all biases zero):

        - embedding E: N(0, emb_dim^-1), PAD row zero (also W_o when tied);
        - recurrent weight_hh: orthogonal per gate block (r, z, n);
        - input weights weight_ie, weight_ic, W_s, readout, untied W_o: Xavier-uniform (per gate block for the GRU).
        """
        nn.init.normal_(self.embedding.weight, std=self.emb_dim**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        for w in (self.weight_ie, self.weight_ic):
            for block in w.data.chunk(3, 0):
                nn.init.xavier_uniform_(block)
        for block in self.weight_hh.data.chunk(3, 0):
            nn.init.orthogonal_(block)
        for lin in (self.W_s, self.readout):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        if not self.tied:
            nn.init.xavier_uniform_(self.out.weight)
        for b in (self.bias_ih, self.bias_hh, self.out.bias):
            nn.init.zeros_(b)

    # ------------------------------------------------------------------ pieces

    def initial_state(self, enc: EncoderOutput) -> torch.Tensor:
        """s_0 = tanh(W_s h̄) [B, Hd] (appendix A.2.2)."""
        return initial_state(self.W_s, enc, self.init_mode)

    def _cell(self, gi: torch.Tensor, gh_rz: torch.Tensor, gh_n: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """:func:`gru_update`."""
        return gru_update(gi, gh_rz, gh_n, s)

    def _features(self, pre: torch.Tensor) -> torch.Tensor:
        """t̃ [..., pieces*R] -> maxout/tanh -> dropout: the input of W_o [..., R]."""
        if self.readout_mode == Readout.maxout:  # max over adjacent pairs (A.2.2)
            return maxout_dropout(pre, self.dropout.p, self.training)
        return self.dropout(torch.tanh(pre))

    def _project(self, pre: torch.Tensor) -> torch.Tensor:
        """t̃ [..., pieces*R] -> logits [..., V]."""
        return self.out(self._features(pre))

    # ------------------------------------------------------------------ search API

    def start(self, enc: EncoderOutput) -> DecoderState:
        """Initial search state: s_0 and the precomputed keys."""
        return DecoderState(s=self.initial_state(enc), enc=enc, keys=self.context.precompute(enc))

    def step(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step from y_{i-1} = ``prev_tokens`` [B] long: (logits [B, V], new state, α_i [B, S] or None)."""
        s = state.s
        ey = self.dropout(self.embedding(prev_tokens))  # [B, E]
        c, attn = self.context(s, state.keys, state.enc)  # c_i from s_{i-1}
        gi = F.linear(ey, self.weight_ie, self.bias_ih) + F.linear(c, self.weight_ic)
        gh_rz, gh_n = F.linear(s, self.weight_hh, self.bias_hh).split(self._rz_n, 1)
        s_new = self._cell(gi, gh_rz, gh_n, s.to(gh_n.dtype))
        s_out = s_new if self.readout_state == ReadoutState.current else s
        dt = s_out.dtype
        logits = self._project(self.readout(torch.cat([s_out, ey.to(dt), c.to(dt)], dim=-1)))
        return logits, DecoderState(s=s_new, enc=state.enc, keys=state.keys), attn

    # ------------------------------------------------------------------ teacher forcing

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced decoding of ``tgt_in`` [B, T] (BOS + y): (logits [B, T, V], α [B, T, S] float32 or None)."""
        t, attn = self.features(tgt_in, enc)
        return self.out(t), attn

    def features(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` up to the output layer W_o: (t_i after dropout [B, T, R], α or None)."""
        ctx = self.context
        ey = self.dropout(self.embedding(tgt_in)).transpose(0, 1)  # [T, B, E]
        gi = linear(ey, self.weight_ie, self.bias_ih)  # [T, B, 3Hd]: W_ie E y_{i-1} + b_ih, all steps at once
        dt = gi.dtype  # the autocast dtype, or the parameters'
        s0 = self.initial_state(enc).to(dt)
        keys = ctx.precompute(enc)
        if ctx.static:
            c = keys  # [B, C], the same for every step: W_ic c hoisted out of the loop
            s_all, _, _ = gru_recurrence(gi + F.linear(c, self.weight_ic), s0, self.weight_hh, self.bias_hh)
            attn = None
        else:
            w_q, b_q, mode, scale, v = self._recurrence_weights()
            s_all, c_all, a_all = gru_recurrence(
                gi, s0, w_q, b_q, w_ic=self.weight_ic, keys=keys.to(dt),
                states=enc.states.to(dt), mask=enc.mask, v=None if v is None else v.to(dt), mode=mode, scale=scale,
            )  # fmt: skip
            attn = a_all.transpose(0, 1).contiguous()  # [B, T, S]
        s_seq = s_all[1:] if self.readout_state == ReadoutState.current else s_all[:-1]  # [T, B, Hd]
        ey = ey.to(dt)
        if ctx.static:
            w_r = self.readout.weight
            split = self.hidden_dim + self.emb_dim
            pre = linear(torch.cat([s_seq, ey], -1), w_r[:, :split], self.readout.bias)
            pre = pre + linear(c, w_r[:, split:])  # C_o c, once
        else:
            pre = linear(torch.cat([s_seq, ey, c_all], -1), self.readout.weight, self.readout.bias)
        return self._features(pre).transpose(0, 1), attn  # element-wise over R: transposed after

    def _recurrence_weights(self) -> tuple[torch.Tensor, torch.Tensor, str, float, torch.Tensor | None]:
        """(W_q, b_q, mode, scale, v_a) of :func:`gru_recurrence` for this attention.

        The additive score's W_a s_{i-1} is stacked under W_hh s_{i-1}, so one GEMM per step
        computes both; the multiplicative scores query with s_{i-1} itself.
        """
        ctx = self.context
        proj = ctx.query_projection
        if proj is None:
            return self.weight_hh, self.bias_hh, DOT, float(ctx.scale), None
        q_bias = proj.bias if proj.bias is not None else self.bias_hh.new_zeros(proj.weight.shape[0])
        w_q = torch.cat([self.weight_hh, proj.weight], 0)
        return w_q, torch.cat([self.bias_hh, q_bias], 0), ADDITIVE, 1.0, ctx.v_a
