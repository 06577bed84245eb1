"""RNNsearch (Bahdanau, Cho & Bengio 2015) and the RNN encoder-decoder baseline."""

from pipeline.model.attention import BahdanauAttention, DotProductAttention, FixedContext
from pipeline.model.decoder import Decoder, DecoderState
from pipeline.model.encoder import Encoder, EncoderOutput
from pipeline.model.luong import LuongDecoder
from pipeline.model.seq2seq import Seq2Seq, build_context, build_model

__all__ = [
    "BahdanauAttention",
    "Decoder",
    "DotProductAttention",
    "DecoderState",
    "Encoder",
    "EncoderOutput",
    "FixedContext",
    "LuongDecoder",
    "Seq2Seq",
    "build_context",
    "build_model",
]
