"""Luong's decoder, teacher-forced without a Python loop: :class:`FusedLuongDecoder`.

Under Luong's placement s_1..s_T depend only on the target prefix (no input feeding), so the
recurrence runs as one fused GRU call over the sequence (``torch._VF.gru``, which ``nn.GRU``
runs; cuDNN on a GPU) with the reference's ``nn.GRUCell`` weights, and the attention of all T
steps is one batched call for the built-in scores (:func:`all_step_weights`).  Search steps
one at a time through the reference's :meth:`~pipeline.model.luong.LuongDecoder.step`.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.fast.decoder import covers_context
from pipeline.fast.registry import FastImpl, adopt, register
from pipeline.model.attention import AdditiveAttention, masked_softmax
from pipeline.model.decoder import initial_state
from pipeline.model.encoder import EncoderOutput
from pipeline.model.luong import LuongDecoder

ADDITIVE_CHUNK_ELEMENTS = 1 << 25  # the additive score's [B, t, S, A] tanh input, at most this many elements at once


def gru_sequence(cell: nn.GRUCell, x: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
    """s_1..s_T [B, T, H] of ``cell`` over ``x`` [B, T, E] from ``s0`` [B, H], in one fused call.

    Under bf16 autocast on CUDA it runs in fp32: cuDNN's autocast wrapper would run fp16
    (see :func:`pipeline.model.encoder.run_fused_rnn`).
    """
    params = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    h0 = s0.to(x.dtype).unsqueeze(0)
    if (
        x.device.type == "cuda"
        and torch.is_autocast_enabled("cuda")
        and torch.get_autocast_dtype("cuda") != torch.float16
    ):
        with torch.autocast("cuda", enabled=False):
            out, _ = torch._VF.gru(x.float(), h0.float(), params, True, 1, 0.0, cell.training, False, True)
        return out
    out, _ = torch._VF.gru(x, h0, params, True, 1, 0.0, cell.training, False, True)
    return out


def all_step_weights(
    attention: nn.Module, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """α [B, T, S] float32 of a built-in score for the queries of all steps ``queries`` [B, T, Hq].

    Additive: the [B, t, S, A] tanh input is built a chunk of steps at a time, at most
    ``ADDITIVE_CHUNK_ELEMENTS`` elements (unless one step alone is larger).
    """
    if isinstance(attention, AdditiveAttention):
        q = attention.W_a(queries)  # [B, T, A]
        b, _, a = q.shape
        step = max(1, ADDITIVE_CHUNK_ELEMENTS // max(1, b * keys.shape[1] * a))
        v = attention.v_a.to(keys.dtype)
        chunks = [
            torch.matmul(torch.tanh(keys.unsqueeze(1) + c.to(keys.dtype).unsqueeze(2)), v) for c in q.split(step, 1)
        ]
        energies = torch.cat(chunks, 1)
    else:
        energies = torch.bmm(queries.to(keys.dtype), keys.transpose(1, 2)) * attention.scale
    return masked_softmax(energies, mask.unsqueeze(1))


class FusedLuongDecoder(LuongDecoder):
    """:class:`~pipeline.model.luong.LuongDecoder` whose teacher forcing is one GRU call and one attention call."""

    @classmethod
    def from_reference(cls, reference: LuongDecoder, device: torch.device) -> FusedLuongDecoder:
        return adopt(cls, reference)

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        ey = self.dropout(self.embedding(tgt_in))  # [B, T, E]
        s_seq = gru_sequence(self.cell, ey, initial_state(self.W_s, enc, self.init_mode))  # s_1..s_T
        keys = self.context.precompute(enc)
        weights = all_step_weights(self.context.attention, s_seq, keys, enc.mask)
        c = torch.bmm(weights.to(enc.states.dtype), enc.states)  # [B, T, C]
        return self.attentional_state(c, s_seq), weights


def _covers(decoder: nn.Module) -> str | None:
    if not decoder.context.has_attention:  # never built: the baseline has no attention to place
        return "no attention"
    return covers_context(decoder.context)


register(
    FastImpl(
        name="fused_luong_decoder",
        component="decoder",
        replaces=LuongDecoder,
        summary="Luong's decoder GRU as one fused call over the sequence, attention for all steps at once",
        devices=("cpu", "cuda"),
        covers=_covers,
        build=FusedLuongDecoder.from_reference,
    )
)
