"""Bahdanau's decoder, teacher-forced through one hand-written recurrence: :class:`RecurrenceDecoder`.

The reference (:meth:`pipeline.model.decoder.Decoder.forward`) loops over its step under
autograd: every step leaves ~30 graph nodes, and the backward pass computes each weight's
gradient as one small GEMM per step.  Here, for the built-in scores (additive, dot, general,
scaled dot) and the fixed context:

* W_ie E y_{i-1} for all steps is one GEMM before the loop;
* the loop is :func:`~pipeline.fast.recurrence.gru_recurrence`, one autograd function whose
  steps do only the query-dependent work (W_hh s_{i-1} fused with the additive score's
  W_a s_{i-1} into one GEMM, attention, W_ic c_i, gate arithmetic) and whose weight gradients
  are one GEMM over all steps; on the CPU the additive step and the GRU gates run as C++ kernels;
* the deep output and its maxout + dropout for all steps are batched after the loop
  (one C++ kernel on the CPU); with the fixed context, W_ic c and C_o c are computed once.

In search (no gradients, CPU) the additive attention step is one call of the same kernel
(:class:`KernelAdditiveContext`).  Same parameters as the reference, adopted
(:func:`pipeline.fast.registry.adopt`); outputs equal to float rounding, gradients too
(tests/unit/fast/test_equivalence.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.fast.cpu_kernels import cpu_kernels
from pipeline.fast.dropout import Dropout, maxout_dropout
from pipeline.fast.linear import linear
from pipeline.fast.recurrence import ADDITIVE, DOT, gru_recurrence
from pipeline.fast.registry import FastImpl, adopt, register
from pipeline.model.attention import AdditiveAttention, DotAttention, GeneralAttention, ScaledDotAttention
from pipeline.model.config import Readout, ReadoutState
from pipeline.model.context import AttentionContext, FixedContext
from pipeline.model.decoder import Decoder, initial_state
from pipeline.model.encoder import EncoderOutput

BUILT_IN_SCORES = (AdditiveAttention, DotAttention, GeneralAttention, ScaledDotAttention)


def attention_keys(attention: nn.Module, states: torch.Tensor) -> torch.Tensor:
    """A built-in score's ``precompute``, with :func:`pipeline.fast.linear.linear` (float32 weight
    gradients under CPU bf16 autocast) for its projection."""
    if isinstance(attention, AdditiveAttention):
        return linear(states, attention.U_a.weight)
    return states if attention.W is None else linear(states, attention.W.weight)


class KernelAdditiveContext(AttentionContext):
    """:class:`~pipeline.model.context.AttentionContext` of an additive attention whose search step
    (no gradients, CPU, keys in the annotations' dtype) is one call of kernels/additive_attention.cpp:
    scores, masked softmax and context, with nothing of size [B, S, A] written to memory."""

    kernels = None

    def forward(self, query, keys, enc: EncoderOutput, history=None):
        states = enc.states
        attention = self.attention
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, keys, states, attention.v_a))
        if needs_grad or self.kernels is None or keys.device.type != "cpu" or keys.dtype != states.dtype:
            return super().forward(query, keys, enc, history)
        q = attention.W_a(query).float().contiguous()
        alpha = torch.empty(enc.mask.shape, dtype=torch.float32, device=keys.device)
        context = torch.empty(states.shape[0], states.shape[2], dtype=states.dtype, device=keys.device)
        v = attention.v_a.float().contiguous()
        self.kernels.attention_forward(
            keys.contiguous(), q, v, states.contiguous(), enc.mask.contiguous(), alpha, context
        )
        return context, alpha


class RecurrenceDecoder(Decoder):
    """:class:`~pipeline.model.decoder.Decoder` whose teacher-forced ``forward`` is one hand-written recurrence."""

    kernels = None

    @classmethod
    def from_reference(cls, reference: Decoder, device: torch.device) -> RecurrenceDecoder:
        fast = adopt(cls, reference)
        fast.kernels = cpu_kernels(device)
        fast.dropout = Dropout(reference.dropout.p, fast.kernels)
        context = reference.context
        if fast.kernels is not None and isinstance(getattr(context, "attention", None), AdditiveAttention):
            fast.context = adopt(KernelAdditiveContext, context)
            fast.context.kernels = fast.kernels
        return fast

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        cell = self.cell
        w_ie, w_ic = cell.weight_ih.split([self.emb_dim, self.context_dim], 1)
        ey = self.dropout(self.embedding(tgt_in)).transpose(0, 1)  # [T, B, E]
        gi = linear(ey, w_ie, cell.bias_ih)  # [T, B, 3Hd]: W_ie E y_{i-1} + b_ih, all steps at once
        dt = gi.dtype  # the autocast dtype, or the parameters'
        s0 = initial_state(self.W_s, enc, self.init_mode).to(dt)
        if not self.context.has_attention:
            c = enc.summary  # [B, C], the same for every step: W_ic c hoisted out of the loop
            s_all, _, _ = gru_recurrence(gi + F.linear(c, w_ic), s0, cell.weight_hh, cell.bias_hh, kernels=self.kernels)
            c_all, attn = None, None
        else:
            attention = self.context.attention
            w_q, b_q, mode, scale, v = self._recurrence_weights(attention)
            s_all, c_all, a_all = gru_recurrence(
                gi, s0, w_q, b_q, w_ic=w_ic, keys=attention_keys(attention, enc.states).to(dt),
                states=enc.states.to(dt), mask=enc.mask, v=None if v is None else v.to(dt), mode=mode, scale=scale,
                kernels=self.kernels,
            )  # fmt: skip
            attn = a_all.transpose(0, 1).contiguous()  # [B, T, S]
        s_seq = s_all[1:] if self.readout_state == ReadoutState.current else s_all[:-1]  # [T, B, Hd]
        return self._deep_output_all(s_seq, ey.to(dt), c_all, enc).transpose(0, 1), attn

    def _deep_output_all(self, s_seq, ey, c_all, enc: EncoderOutput) -> torch.Tensor:
        """t_i after dropout [T, B, R] for all steps; with the fixed context, C_o c once."""
        w_r = self.readout.weight
        if c_all is None:
            split = self.hidden_dim + self.emb_dim
            pre = linear(torch.cat([s_seq, ey], -1), w_r[:, :split], self.readout.bias)
            pre = pre + linear(enc.summary, w_r[:, split:])  # C_o c, once
        else:
            pre = linear(torch.cat([s_seq, ey, c_all], -1), w_r, self.readout.bias)
        if self.readout_mode == Readout.maxout:  # max over adjacent pairs (A.2.2), with its dropout
            return maxout_dropout(pre, self.dropout.p, self.training, self.kernels)
        return self.dropout(torch.tanh(pre))

    def _recurrence_weights(self, attention: nn.Module):
        """(W_q, b_q, mode, scale, v_a) of :func:`gru_recurrence` for this attention.

        The additive score's W_a s_{i-1} is stacked under W_hh s_{i-1}, so one GEMM per step
        computes both; the multiplicative scores query with s_{i-1} itself.
        """
        cell = self.cell
        if isinstance(attention, AdditiveAttention):
            w_q = torch.cat([cell.weight_hh, attention.W_a.weight], 0)
            b_q = torch.cat([cell.bias_hh, cell.bias_hh.new_zeros(attention.W_a.weight.shape[0])], 0)
            return w_q, b_q, ADDITIVE, 1.0, attention.v_a
        return cell.weight_hh, cell.bias_hh, DOT, float(attention.scale), None


def covers_context(context: nn.Module) -> str | None:
    """None for the fixed context and the built-in scores (exact classes, no history), else why not."""
    if type(context) is FixedContext:
        return None
    attention = getattr(context, "attention", None)
    if type(context) is not AttentionContext or type(attention) not in BUILT_IN_SCORES:
        name = type(attention if attention is not None else context)
        return f"written for the built-in scores, not {name.__module__}.{name.__qualname__}"
    return None


def _covers(decoder: nn.Module) -> str | None:
    return covers_context(decoder.context)


register(
    FastImpl(
        name="recurrence_decoder",
        component="decoder",
        replaces=Decoder,
        summary="teacher forcing as one GRU recurrence with a hand-written backward (C++ kernels on the CPU)",
        devices=("cpu", "cuda"),
        covers=_covers,
        build=RecurrenceDecoder.from_reference,
    )
)
