"""Analytical FLOPs of the encoder-decoder, training and decoding, for model FLOPs utilisation (MFU).

Counted: the matrix products, at 2 FLOPs per multiply-add, over *real* tokens only
(padding is waste, not work), forward and backward (backward = 2 x forward, so a
training step costs 3 x forward).  Decoding is forward only: the encoder once per sentence,
the decoder once per row of each search step (a beam search's k rows per sentence all count).
Element-wise gate arithmetic, softmax and the optimizer are left out: they are a few percent
and not what the hardware peaks at.

Per source token (encoder, each layer l and direction; G = 3 gates for GRU, 4 for LSTM):
    2 * G * (in_l + He) * He,  in_1 = E, in_l = 2He
Per target token (decoder; C = 2He):
    GRU           2 * 3 * (E + C + Hd) * Hd
    deep output   2 * (Hd + E + C) * P * R       P = 2 for maxout, 1 for tanh
    projection    2 * R * V
    attention     2 * Hd * A                     W_a s_{i-1}
  Luong's placement instead (model.attention.placement=luong):
    GRU           2 * 3 * (E + Hd) * Hd          the context is not a GRU input
    h̃             2 * (C + Hd) * R               tanh(W_c [c_i; s_i]), no maxout
Per (target, source) pair, attention only:
    2 * A + 2 * C                                additive: v_a . tanh(...) and sum_j alpha_ij h_j
    2 * Hd + 2 * C                               dot, general, scaled_dot: s . k_j and sum_j alpha_ij h_j
Per source token, attention only:
    2 * C * A                                    additive: U_a h_j (once per batch)
    2 * C * Hd                                   general (and dot when Hd != C): W h_j (once per batch)
Per sentence:
    2 * He * Hd                                  s_0 = tanh(W_s ←h_1)  (init_state=first_backward)
    2 * C * Hd                                   s_0 = tanh(W_s mean_j h_j)  (init_state=mean)
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.config import (
    AttentionPlacement,
    AttentionScore,
    ContextType,
    InitState,
    ModelConfig,
    Readout,
    RnnType,
)


def training_flops(cfg: ModelConfig, tgt_vocab: int, src_lens: Sequence[int], tgt_lens: Sequence[int]) -> float:
    """Forward + backward FLOPs of one teacher-forced batch (lengths include EOS)."""
    return 3.0 * forward_flops(cfg, tgt_vocab, src_lens, tgt_lens)


def decoding_flops(cfg: ModelConfig, tgt_vocab: int, src_lens: Sequence[int], decoder_rows: int) -> float:
    """Forward FLOPs of a search over sentences of ``src_lens`` that ran ``decoder_rows`` decoder
    steps in all (Σ over steps of the rows in that step's batch).  Which sentence each row
    belongs to is not tracked: every row is charged the mean source length for its attention,
    a term below 0.2% of a row's cost at the default sizes."""
    if not src_lens:
        return 0.0
    encoder_and_init = forward_flops(cfg, tgt_vocab, src_lens, [0] * len(src_lens))
    mean_src = sum(src_lens) / len(src_lens)
    one_row = forward_flops(cfg, tgt_vocab, [mean_src], [1]) - forward_flops(cfg, tgt_vocab, [mean_src], [0])
    return encoder_and_init + one_row * decoder_rows


def forward_flops(cfg: ModelConfig, tgt_vocab: int, src_lens: Sequence[float], tgt_lens: Sequence[float]) -> float:
    """Forward FLOPs of the batch's matrix products (the formulas of the module docstring)."""
    e, he, hd = cfg.emb_dim, cfg.encoder.hidden_dim, cfg.decoder.hidden_dim
    c, a, r = 2 * he, cfg.attention.dim, cfg.decoder.readout_dim
    gates = 4 if RnnType(cfg.encoder.rnn) is RnnType.lstm else 3
    pieces = 2 if Readout(cfg.decoder.readout) is Readout.maxout else 1
    enc_per_src = sum(2 * 2 * gates * ((e if layer == 0 else c) + he) * he for layer in range(cfg.encoder.layers))
    attention = ContextType(cfg.context) is ContextType.attention
    if attention and AttentionPlacement(cfg.attention.placement) is AttentionPlacement.luong:
        dec_per_tgt = 2 * 3 * (e + hd) * hd + 2 * (c + hd) * r + 2 * r * tgt_vocab
    else:
        dec_per_tgt = 2 * 3 * (e + c + hd) * hd + 2 * (hd + e + c) * pieces * r + 2 * r * tgt_vocab
    init_in = he if InitState(cfg.decoder.init_state) is InitState.first_backward else c
    n_src, n_tgt = sum(src_lens), sum(tgt_lens)
    forward = enc_per_src * n_src + dec_per_tgt * n_tgt + 2 * init_in * hd * len(src_lens)
    if attention:
        pairs = sum(s * t for s, t in zip(src_lens, tgt_lens))
        score = AttentionScore(cfg.attention.score)
        if score is AttentionScore.additive:
            forward += 2 * hd * a * n_tgt + (2 * a + 2 * c) * pairs + 2 * c * a * n_src
        else:
            projected = score is AttentionScore.general or c != hd
            forward += (2 * hd + 2 * c) * pairs + (2 * c * hd * n_src if projected else 0)
    return forward
