"""The model's configuration: plain dataclasses, no Hydra.

``conf/model/*.yaml`` holds the values and documents each knob; these dataclasses hold the
types (Hydra composes the YAML against them, :mod:`pipeline.config`) and mirror the YAML's
defaults so that the model can be built without Hydra: ``build_model(ModelConfig(), ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from pipeline.fields import at_least, fraction


class RnnType(str, Enum):
    gru = "gru"
    lstm = "lstm"


class ContextType(str, Enum):
    attention = "attention"  # RNNsearch: c_i = Σ_j α_ij h_j (eq. 5)
    fixed = "fixed"  # RNN encoder-decoder baseline: c_i = c for all i (appendix A.2.2)


class AttentionScore(str, Enum):
    additive = "additive"  # Bahdanau eq. 6: v_aᵀ tanh(W_a s + U_a h)
    dot = "dot"  # Luong: sᵀ h
    general = "general"  # Luong: sᵀ W h
    scaled_dot = "scaled_dot"  # sᵀ h / sqrt(d)


class AttentionPlacement(str, Enum):
    bahdanau = "bahdanau"  # query s_{i-1}; c_i feeds the GRU step (eq. 4)
    luong = "luong"  # query s_i after the step; h̃_i = tanh(W_c [c_i; s_i]) feeds the output (Luong eq. 5)


class InitState(str, Enum):
    first_backward = "first_backward"  # s_0 = tanh(W_s ←h_1), appendix A.2.2
    mean = "mean"  # s_0 = tanh(W_s mean_j h_j)


class Readout(str, Enum):
    maxout = "maxout"
    tanh = "tanh"


class ReadoutState(str, Enum):
    current = "current"  # t_i from s_i
    previous = "previous"  # t_i from s_{i-1}, as in the paper's appendix A.2.2


class Impl(str, Enum):
    """Which implementation trains and decodes (pipeline/fast/registry.py)."""

    auto = "auto"  # a registered fast implementation where one covers the module and device, else the reference
    reference = "reference"  # the plain modules of pipeline/model/, trained by autograd
    fast = "fast"  # like auto, but fail when the decoder has no fast implementation


@dataclass
class EncoderConfig:
    rnn: RnnType = RnnType.gru
    hidden_dim: int = at_least(256, 1)
    layers: int = at_least(2, 1)
    dropout: float = fraction(0.2)


@dataclass
class DecoderConfig:
    hidden_dim: int = at_least(512, 1)
    init_state: InitState = InitState.first_backward
    readout: Readout = Readout.maxout
    readout_state: ReadoutState = ReadoutState.current
    readout_dim: int = at_least(256, 1)
    tie_embeddings: bool = True


@dataclass
class AttentionConfig:
    score: AttentionScore = AttentionScore.additive
    placement: AttentionPlacement = AttentionPlacement.bahdanau
    dim: int = at_least(512, 1)


@dataclass
class ModelConfig:
    name: str = "bahdanau"
    context: ContextType = ContextType.attention
    emb_dim: int = at_least(256, 1)
    dropout: float = fraction(0.2)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    attention_class: Optional[str] = None  # "module.Class": a user's attention, instead of attention.score
    impl: Impl = Impl.auto
    fast_exclude: list[str] = field(default_factory=list)  # registered fast implementations not to use
