"""The analytical FLOP count behind MFU, on a hand-computed case."""

from __future__ import annotations

import pytest

from pipeline.config import AttentionConfig, AttentionPlacement, ContextType, DecoderConfig, EncoderConfig, ModelConfig
from pipeline.runtime.flops import decoding_flops, training_flops


def tiny(context: ContextType) -> ModelConfig:
    return ModelConfig(
        context=context,
        emb_dim=2,
        encoder=EncoderConfig(hidden_dim=1, layers=1),
        decoder=DecoderConfig(hidden_dim=3, readout_dim=2),
        attention=AttentionConfig(dim=4),
    )


def test_baseline_count_by_hand():
    # E=2, He=1 (C=2), Hd=3, R=2 (maxout: 4 units), V=5; one sentence, 3 source and 2 target tokens
    enc_per_src = 2 * 2 * 3 * (2 + 1) * 1  # 2 directions, 3 gates
    dec_per_tgt = 2 * 3 * (2 + 2 + 3) * 3 + 2 * (3 + 2 + 2) * 4 + 2 * 2 * 5
    init = 2 * 1 * 3  # s_0 = tanh(W_s ←h_1): He = 1 -> Hd = 3 (init_state=first_backward)
    expected = 3 * (enc_per_src * 3 + dec_per_tgt * 2 + init)
    assert training_flops(tiny(ContextType.fixed), 5, [3], [2]) == pytest.approx(expected)


def test_attention_adds_exactly_its_terms():
    extra = 2 * 3 * 4 * 2 + (2 * 4 + 2 * 2) * (3 * 2) + 2 * 2 * 4 * 3  # W_a s, v.tanh + context, U_a h
    attention = training_flops(tiny(ContextType.attention), 5, [3], [2])
    assert attention - training_flops(tiny(ContextType.fixed), 5, [3], [2]) == pytest.approx(3 * extra)


def test_luong_placement_count_by_hand():
    # the GRU loses its context input, the deep output becomes h̃ = tanh(W_c [c; s]); attention terms are unchanged
    cfg = tiny(ContextType.attention)
    cfg.attention.placement = AttentionPlacement.luong
    dec_bahdanau = 2 * 3 * (2 + 2 + 3) * 3 + 2 * (3 + 2 + 2) * 4
    dec_luong = 2 * 3 * (2 + 3) * 3 + 2 * (2 + 3) * 2
    difference = training_flops(tiny(ContextType.attention), 5, [3], [2]) - training_flops(cfg, 5, [3], [2])
    assert difference == pytest.approx(3 * (dec_bahdanau - dec_luong) * 2)


@pytest.mark.parametrize("context", [ContextType.fixed, ContextType.attention])
def test_decoding_is_the_forward_pass_once_per_decoder_row(context):
    """Greedy over one sentence runs one decoder row per output token (EOS included): training's
    forward third; a beam of k runs k rows a step and encodes the source once."""
    cfg = tiny(context)
    assert decoding_flops(cfg, 5, [3], 2) == pytest.approx(training_flops(cfg, 5, [3], [2]) / 3)
    encoder = decoding_flops(cfg, 5, [3], 0)
    assert decoding_flops(cfg, 5, [3], 4 * 2) - encoder == pytest.approx(4 * (decoding_flops(cfg, 5, [3], 2) - encoder))
    assert decoding_flops(cfg, 5, [], 0) == 0.0
