"""Bidirectional RNN encoder (Bahdanau et al. 2015, section 3.2 and appendix A.2.1).

Each source position j gets an annotation h_j = [→h_j ; ←h_j], the concatenation
of the forward and backward top-layer states.  Sequences are packed, so padding
never reaches the recurrence: a sentence encodes to the same annotations alone
or inside a padded batch, and annotations at padded positions are exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from pipeline.config import ModelConfig, RnnType
from pipeline.model.dropout import Dropout, dropout
from pipeline.model.linear import linear
from pipeline.model.recurrence import packed_gru_recurrence
from pipeline.tokenizer import PAD_ID


@dataclass
class EncoderOutput:
    """What the decoder needs from the source.  B sentences, S positions, He = encoder hidden per direction.

    states         [B, S, 2He]  annotations h_j = [→h_j ; ←h_j] (top layer), exactly 0 where ``mask`` is False
    mask           [B, S] bool  True on real source positions
    summary        [B, 2He]     [→h_{T_x} ; ←h_1]: the fixed context c of the RNN encoder-decoder baseline
    first_backward [B, He]      ←h_1, the top-layer backward state at position 0 (the source of the paper's s_0)
    """

    states: torch.Tensor
    mask: torch.Tensor
    summary: torch.Tensor
    first_backward: torch.Tensor

    def index_select(self, idx: torch.Tensor) -> EncoderOutput:
        """Rows ``idx`` [B'] (long) of every tensor: reorders or repeats sentences, e.g. for beam search."""
        return EncoderOutput(
            states=self.states.index_select(0, idx),
            mask=self.mask.index_select(0, idx),
            summary=self.summary.index_select(0, idx),
            first_backward=self.first_backward.index_select(0, idx),
        )


_GRU_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def run_fused_rnn(rnn: nn.RNNBase, x, hx: torch.Tensor | None = None):
    """``rnn(x, hx)``, in fp32 when bf16 autocast is on for CUDA.

    cuDNN's autocast wrapper (aten/src/ATen/cudnn/AutocastRNN.cpp) runs an RNN in fp16
    whatever dtype autocast was asked for; without loss scaling that risks gradient
    underflow, so under bf16 the fused recurrence runs in fp32 (as on CPU, where autocast
    leaves ``nn.GRU`` alone).  ``x`` is a tensor or a PackedSequence.
    """
    data = x.data if isinstance(x, PackedSequence) else x
    if data.device.type != "cuda" or not torch.is_autocast_enabled("cuda"):
        return rnn(x, hx)
    if torch.get_autocast_dtype("cuda") == torch.float16:
        return rnn(x, hx)
    with torch.autocast("cuda", enabled=False):
        return rnn(x.float(), None if hx is None else hx.float())


def init_rnn_(rnn: nn.RNNBase) -> None:
    """Recurrent weights orthogonal per gate block, input weights Xavier-uniform per gate block, biases zero.

    For an LSTM the forget-gate bias (second of the i, f, g, o blocks of ``bias_ih``) starts at 1.
    """
    gates = 4 if isinstance(rnn, nn.LSTM) else 3
    for name, p in rnn.named_parameters():
        if name.startswith("weight_hh"):
            for block in p.data.chunk(gates, 0):
                nn.init.orthogonal_(block)
        elif name.startswith("weight_ih"):
            for block in p.data.chunk(gates, 0):
                nn.init.xavier_uniform_(block)
        elif name.startswith("bias"):
            nn.init.zeros_(p)
            if gates == 4 and name.startswith("bias_ih"):
                p.data.chunk(4, 0)[1].fill_(1.0)


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


class Encoder(nn.Module):
    """Embedding -> dropout -> bidirectional multi-layer GRU/LSTM over packed sequences.

    Config: ``cfg.emb_dim``, ``cfg.dropout`` (on embeddings), ``cfg.encoder.rnn`` / ``.layers`` /
    ``.hidden_dim`` (He, per direction) / ``.dropout`` (between layers).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        enc = cfg.encoder
        self.hidden_dim = enc.hidden_dim
        self.embedding = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.dropout = Dropout(cfg.dropout)
        rnn_cls = nn.LSTM if RnnType(enc.rnn) == RnnType.lstm else nn.GRU
        self.rnn = rnn_cls(
            cfg.emb_dim,
            enc.hidden_dim,
            num_layers=enc.layers,
            dropout=enc.dropout if enc.layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )
        self.reset_parameters()

    @property
    def output_dim(self) -> int:
        """2He: the width of an annotation h_j."""
        return 2 * self.hidden_dim

    def reset_parameters(self) -> None:
        """Embeddings N(0, emb_dim^-1) with the PAD row zero; RNN as in :func:`init_rnn_`."""
        nn.init.normal_(self.embedding.weight, std=self.embedding.embedding_dim**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        init_rnn_(self.rnn)

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor) -> EncoderOutput:
        """Encode ``src`` [B, S] long (PAD-padded) with true lengths ``src_lens`` [B] long (all >= 1).

        A GRU on the CPU runs :meth:`unrolled_gru` (the same function as torch's packed GRU,
        faster there); an LSTM, or any RNN on CUDA (cuDNN), runs :meth:`packed_rnn`.
        """
        bsz, slen = src.shape
        he = self.hidden_dim
        lens = src_lens.to(src.device)
        mask = torch.arange(slen, device=src.device)[None, :] < lens[:, None]
        packed = pack_padded_sequence(src, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        emb = packed._replace(data=self.dropout(self.embedding(packed.data)))  # [N, E]: real positions only
        if isinstance(self.rnn, nn.GRU) and src.device.type == "cpu":
            states = self.unrolled_gru(emb, slen)
        else:
            states = self.packed_rnn(emb, slen)
        last_fwd = states[torch.arange(bsz, device=states.device), lens - 1, :he]  # →h_{T_x}
        first_bwd = states[:, 0, he:]  # ←h_1
        return EncoderOutput(
            states=states,
            mask=mask,
            summary=torch.cat([last_fwd, first_bwd], dim=-1),
            first_backward=first_bwd,
        )

    def packed_rnn(self, emb: PackedSequence, total_length: int) -> torch.Tensor:
        """Annotations [B, total_length, 2He] of the packed embeddings ``emb`` from ``self.rnn``."""
        out, _ = run_fused_rnn(self.rnn, emb)
        states, _ = pad_packed_sequence(out, batch_first=True, padding_value=0.0, total_length=total_length)
        return states

    def unrolled_gru(self, emb: PackedSequence, total_length: int) -> torch.Tensor:
        """:meth:`packed_rnn` for a GRU, with ``self.rnn``'s weights, through :func:`packed_gru_recurrence`.

        Why: torch's CPU GRU steps a packed batch with autograd ops per step and per layer, and
        accumulates each weight gradient step by step; :func:`packed_gru_recurrence` computes
        W_ih x for all positions in one GEMM, every weight gradient once, and, like torch's,
        nothing on padding (~12% of the source positions of a training batch).  The backward
        direction reads each packed sequence reversed within its length
        (:func:`reversed_within_length`), which keeps the packed layout.
        """
        rnn = self.rnn
        reverse = reversed_within_length(emb.batch_sizes).to(emb.data.device)
        steps = emb.batch_sizes.tolist()
        x = emb.data  # [N, E]: the real positions only
        for layer in range(rnn.num_layers):
            if layer > 0:
                x = dropout(x, rnn.dropout, self.training)
            outs = []
            for suffix in ("", "_reverse"):
                w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{n}_l{layer}{suffix}") for n in _GRU_PARAMS)
                inp = _PermuteRows.apply(x, reverse) if suffix else x
                gi = linear(inp, w_ih, b_ih)  # [N, 3He]: W_ih x_t + b_ih for every real position
                y = packed_gru_recurrence(gi, gi.new_zeros(steps[0], self.hidden_dim), w_hh, b_hh, steps)
                outs.append(_PermuteRows.apply(y, reverse) if suffix else y)
            x = torch.cat(outs, -1)
        out = emb._replace(data=x)
        states, _ = pad_packed_sequence(out, batch_first=True, padding_value=0.0, total_length=total_length)
        return states  # [B, S, 2He]
