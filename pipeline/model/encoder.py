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

from pipeline.model.config import ModelConfig, RnnType


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


def init_rnn_(rnn: nn.Module) -> None:
    """Recurrent weights orthogonal per gate block, input weights Xavier-uniform per gate block, biases zero.

    For an LSTM the forget-gate bias (second of the i, f, g, o blocks of ``bias_ih``) starts at 1.
    Works for ``nn.GRU``/``nn.LSTM`` and for ``nn.GRUCell`` (whose names have no layer suffix).
    """
    gates = 4 if isinstance(rnn, (nn.LSTM, nn.LSTMCell)) else 3
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


class Encoder(nn.Module):
    """Embedding -> dropout -> bidirectional multi-layer GRU/LSTM over packed sequences.

    Config: ``cfg.emb_dim``, ``cfg.dropout`` (on embeddings), ``cfg.encoder.rnn`` / ``.layers`` /
    ``.hidden_dim`` (He, per direction) / ``.dropout`` (between layers).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        enc = cfg.encoder
        self.hidden_dim = enc.hidden_dim
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(cfg.dropout)
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
            self.embedding.weight[self.pad_id].zero_()
        init_rnn_(self.rnn)

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor) -> EncoderOutput:
        """Encode ``src`` [B, S] long (PAD-padded) with true lengths ``src_lens`` [B] long (all >= 1).

        The ids are packed first, so the embeddings and their dropout see real positions only.
        """
        bsz, slen = src.shape
        he = self.hidden_dim
        lens = src_lens.to(src.device)
        mask = torch.arange(slen, device=src.device)[None, :] < lens[:, None]
        packed = pack_padded_sequence(src, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        emb = packed._replace(data=self.dropout(self.embedding(packed.data)))  # [N, E]: real positions only
        states = self.annotations(emb, slen)
        last_fwd = states[torch.arange(bsz, device=states.device), lens - 1, :he]  # →h_{T_x}
        first_bwd = states[:, 0, he:]  # ←h_1
        return EncoderOutput(
            states=states,
            mask=mask,
            summary=torch.cat([last_fwd, first_bwd], dim=-1),
            first_backward=first_bwd,
        )

    def annotations(self, emb: PackedSequence, total_length: int) -> torch.Tensor:
        """h_j = [→h_j ; ←h_j] [B, total_length, 2He] of the packed embeddings ``emb`` (0 on padding)."""
        out, _ = run_fused_rnn(self.rnn, emb)
        states, _ = pad_packed_sequence(out, batch_first=True, padding_value=0.0, total_length=total_length)
        return states
