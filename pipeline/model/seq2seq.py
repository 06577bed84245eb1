"""The full model: RNNsearch (Bahdanau attention) or the RNN encoder-decoder baseline.

The two differ only in the decoder's context module (``cfg.context``): attention
recomputes c_i at every step (eqs. 5-6), the baseline fixes c_i = c (appendix A.2.2).
Everything else (encoder, decoder recurrence, deep output, initialisation) is shared,
so parameter counts differ only by the attention's own parameters.  With
``model.attention.placement=luong`` the attention model's decoder is
:class:`~pipeline.model.luong.LuongDecoder` instead (query s_i, attentional hidden state h̃_i).

:func:`build_model` needs a plain :class:`~pipeline.model.config.ModelConfig` and the
vocabulary's pad id: nothing of Hydra, the tokenizer or the fast paths.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.attention import attention_class, build_attention
from pipeline.model.config import AttentionPlacement, ContextType, ModelConfig
from pipeline.model.context import AttentionContext, FixedContext
from pipeline.model.decoder import Decoder, DecoderState
from pipeline.model.encoder import Encoder, EncoderOutput
from pipeline.model.loss import SmoothedCrossEntropy
from pipeline.model.luong import LuongDecoder


def build_context(cfg: ModelConfig) -> nn.Module:
    """The context module of ``cfg``: the fixed summary, or an attention (built-in or ``model.attention_class``)."""
    if ContextType(cfg.context) == ContextType.fixed:
        return FixedContext()
    query_dim, key_dim = cfg.decoder.hidden_dim, 2 * cfg.encoder.hidden_dim
    return AttentionContext(build_attention(attention_class(cfg), query_dim, key_dim, cfg.attention.dim))


def build_decoder(cfg: ModelConfig, tgt_vocab: int, pad_id: int) -> nn.Module:
    """Bahdanau's placement (:class:`Decoder`) or Luong's (:class:`LuongDecoder`, attention only).

    The baseline has no attention to place, so ``model.attention.placement`` does not apply to it.
    """
    context = build_context(cfg)
    luong = AttentionPlacement(cfg.attention.placement) == AttentionPlacement.luong
    if luong and context.has_attention:
        return LuongDecoder(cfg, tgt_vocab, context, pad_id)
    return Decoder(cfg, tgt_vocab, context, pad_id)


class Seq2Seq(nn.Module):
    """Encoder + decoder + loss.  Shapes: B sentences, S source / T target positions, V target vocabulary.

    Initialisation (see each module's ``reset_parameters``): embeddings N(0, 1/emb_dim)
    with a zero PAD row, recurrent matrices orthogonal per gate block, every other
    matrix Xavier-uniform, biases zero (LSTM forget-gate bias 1).
    """

    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int, pad_id: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.src_vocab, self.tgt_vocab, self.pad_id = src_vocab, tgt_vocab, pad_id
        self.encoder = Encoder(cfg, src_vocab, pad_id)
        self.decoder = build_decoder(cfg, tgt_vocab, pad_id)
        self.criterion = SmoothedCrossEntropy(pad_id)

    @property
    def has_attention(self) -> bool:
        """True for RNNsearch (``forward``/``step`` return attention weights), False for the baseline."""
        return bool(self.decoder.context.has_attention)

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> EncoderOutput:
        """``src`` [B, S] long (PAD-padded, ends with EOS), ``src_lens`` [B] long -> :class:`EncoderOutput`."""
        return self.encoder(src, src_lens)

    def forward(
        self,
        src: torch.Tensor,
        src_lens: torch.Tensor,
        tgt_in: torch.Tensor,
        tgt_out: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: (logits [B, T, V], attention [B, T, S] float32 or None).

        Given the targets ``tgt_out`` [B, T] (PAD where there is none), returns instead the
        summed label-smoothed cross-entropy over the real target tokens (float32 scalar).
        The loss is computed here, in ``forward``, so that DistributedDataParallel sees all of it.
        """
        features, attn = self.decoder(tgt_in, self.encode(src, src_lens))
        out = self.decoder.out
        if tgt_out is None:
            return out(features), attn
        return self.criterion(features.flatten(0, 1), out, tgt_out.flatten(), label_smoothing), attn

    def start(self, enc: EncoderOutput) -> DecoderState:
        """Search state before the first step (s_0, enc, precomputed keys)."""
        return self.decoder.start(enc)

    def step(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One decoding step from ``prev_tokens`` [B] long: (logits [B, V], new state, attention [B, S] or None).

        Gives the same logits as :meth:`forward` at that position (eval mode).
        """
        return self.decoder.step(prev_tokens, state)

    def num_parameters(self) -> int:
        """Number of trainable scalars (a tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, pad_id: int) -> Seq2Seq:
    """The reference model described by ``cfg`` for the given vocabulary sizes and padding id."""
    return Seq2Seq(cfg, src_vocab, tgt_vocab, pad_id)
