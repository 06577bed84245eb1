"""The encoder's GRU on the CPU as a hand-written packed recurrence: :class:`PackedGruEncoder`.

Why: torch's CPU GRU steps a packed batch with autograd ops per step and per layer, and
accumulates each weight gradient step by step; :func:`~pipeline.fast.recurrence.packed_gru_recurrence`
computes W_ih x for all positions in one GEMM, every weight gradient once, and, like torch's,
nothing on padding (~12% of the source positions of a training batch).  The backward direction
reads each packed sequence reversed within its length (:func:`reversed_within_length`), which
keeps the packed layout.  The same function as :meth:`pipeline.model.encoder.Encoder.annotations`
(``nn.GRU`` over packed sequences), with the same weights; dropout draws its masks by
:mod:`pipeline.fast.dropout`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from pipeline.fast.cpu_kernels import cpu_kernels
from pipeline.fast.dropout import Dropout, dropout
from pipeline.fast.linear import linear
from pipeline.fast.recurrence import packed_gru_recurrence
from pipeline.fast.registry import FastImpl, adopt, register
from pipeline.model.encoder import Encoder

_GRU_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class _PermuteRows(torch.autograd.Function):
    """Rows of ``x`` [N, ...] permuted by ``rows`` [N], a permutation that is its own inverse (each
    packed sequence reversed within its length): the backward pass is the same permutation of
    the gradient, not index_select's scatter-add into zeros."""

    @staticmethod
    def forward(ctx, x, rows):
        ctx.save_for_backward(rows)
        return x.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad):
        (rows,) = ctx.saved_tensors
        return grad.index_select(0, rows), None


def reversed_within_length(batch_sizes: torch.Tensor) -> torch.Tensor:
    """The packed row of x_{len-1-t} for the packed row of every x_t (a self-inverse permutation [N]).

    ``batch_sizes`` [S] are a PackedSequence's: row ``offset[t] + j`` holds position t of the
    j-th sequence in its sorted order (longest first), whose length is the count of steps t
    with ``batch_sizes[t] > j``.
    """
    offsets = torch.cumsum(batch_sizes, 0) - batch_sizes
    t = torch.arange(len(batch_sizes))[:, None]
    j = torch.arange(int(batch_sizes[0]))[None, :]
    lengths = (j < batch_sizes[:, None]).sum(0, keepdim=True)  # [1, B]
    real = t < lengths
    reversed_t = (lengths - 1 - t).clamp_min(0)
    return (offsets[reversed_t] + j)[real]  # [S, B] flattened over real positions: packed order


class PackedGruEncoder(Encoder):
    """:class:`~pipeline.model.encoder.Encoder` whose GRU runs as :func:`packed_gru_recurrence`."""

    kernels = None  # the loaded CPU kernels (pipeline/fast/cpu_kernels.py), or None: torch ops

    @classmethod
    def from_reference(cls, reference: Encoder, device: torch.device) -> PackedGruEncoder:
        fast = adopt(cls, reference)
        fast.kernels = cpu_kernels(device)
        fast.dropout = Dropout(reference.dropout.p, fast.kernels)
        return fast

    def annotations(self, emb: PackedSequence, total_length: int) -> torch.Tensor:
        rnn = self.rnn
        reverse = reversed_within_length(emb.batch_sizes).to(emb.data.device)
        steps = emb.batch_sizes.tolist()
        x = emb.data  # [N, E]: the real positions only
        for layer in range(rnn.num_layers):
            if layer > 0:
                x = dropout(x, rnn.dropout, self.training, self.kernels)
            outs = []
            for suffix in ("", "_reverse"):
                w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{n}_l{layer}{suffix}") for n in _GRU_PARAMS)
                inp = _PermuteRows.apply(x, reverse) if suffix else x
                gi = linear(inp, w_ih, b_ih)  # [N, 3He]: W_ih x_t + b_ih for every real position
                s0 = gi.new_zeros(steps[0], self.hidden_dim)
                y = packed_gru_recurrence(gi, s0, w_hh, b_hh, steps, self.kernels)
                outs.append(_PermuteRows.apply(y, reverse) if suffix else y)
            x = torch.cat(outs, -1)
        states, _ = pad_packed_sequence(
            emb._replace(data=x), batch_first=True, padding_value=0.0, total_length=total_length
        )
        return states  # [B, S, 2He]


def _covers(encoder: nn.Module) -> str | None:
    if not isinstance(encoder.rnn, nn.GRU):
        return "an LSTM encoder (nn.LSTM is the reference)"
    return None


register(
    FastImpl(
        name="packed_gru_encoder",
        component="encoder",
        replaces=Encoder,
        summary="the encoder's GRU as a packed recurrence with a hand-written backward and the C++ GRU-cell kernel",
        devices=("cpu",),
        covers=_covers,
        build=PackedGruEncoder.from_reference,
    )
)
