"""RNNsearch (Bahdanau, Cho & Bengio 2015) and the RNN encoder-decoder baseline, as plain PyTorch modules.

This package is the model a reader came for and the model that trains with ``model.impl=reference``.
It imports torch only: faster implementations of some of its modules live in :mod:`pipeline.fast`.
"""

from pipeline.model.attention import (
    AdditiveAttention,
    AttentionHistory,
    DotAttention,
    GeneralAttention,
    ScaledDotAttention,
    masked_softmax,
)
from pipeline.model.config import ModelConfig
from pipeline.model.context import AttentionContext, FixedContext
from pipeline.model.decoder import Decoder, DecoderState
from pipeline.model.encoder import Encoder, EncoderOutput
from pipeline.model.luong import LuongDecoder
from pipeline.model.seq2seq import Seq2Seq, build_context, build_model

__all__ = [
    "AdditiveAttention",
    "AttentionContext",
    "AttentionHistory",
    "Decoder",
    "DecoderState",
    "DotAttention",
    "Encoder",
    "EncoderOutput",
    "FixedContext",
    "GeneralAttention",
    "LuongDecoder",
    "ModelConfig",
    "ScaledDotAttention",
    "Seq2Seq",
    "build_context",
    "build_model",
    "masked_softmax",
]
