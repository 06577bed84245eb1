"""The matrix products bench.py times as the model's GEMM shapes: the same FLOPs as the analytical
count where nothing is padded, and the padding the fast path really multiplies where it is."""

from __future__ import annotations

import pytest

from pipeline.config import AttentionConfig, ContextType, DecoderConfig, EncoderConfig, ModelConfig
from pipeline.runtime.flops import training_flops
from pipeline.runtime.gemm_shapes import gemm_flops, training_gemms

E, HE, HD, R, A, V = 2, 3, 5, 2, 7, 11  # C = 2 HE = 6; distinct, so that no two products share a shape


def tiny(context: ContextType, layers: int = 2) -> ModelConfig:
    return ModelConfig(
        context=context,
        emb_dim=E,
        encoder=EncoderConfig(hidden_dim=HE, layers=layers),
        decoder=DecoderConfig(hidden_dim=HD, readout_dim=R),
        attention=AttentionConfig(dim=A),
    )


@pytest.mark.parametrize("context", [ContextType.fixed, ContextType.attention])
def test_unpadded_batch_has_the_analytical_flops(context):
    # 3 sentences of 4 source and 3 target tokens: no padding anywhere.  Three exact differences:
    # the encoder's backward skips W_hh s_0 (s_0 = 0); attention's pair terms are not GEMMs,
    # except ∂h = Σ α_iᵀ ∂c_i, a batched product; the baseline's W_ic c and C_o c, counted per
    # target token, are computed once per sentence
    cfg, b, s, t, c, pieces = tiny(context), 3, 4, 3, 2 * HE, 2
    skipped = cfg.encoder.layers * 2 * (2 * b * 3 * HE * HE)
    pairs = b * s * t
    if context is ContextType.attention:
        not_gemm = 3 * (2 * A + 2 * c) * pairs - 2 * c * pairs
    else:
        not_gemm = 3 * (b * t - b) * (2 * c * 3 * HD + 2 * c * pieces * R)
    expected = training_flops(cfg, V, [s] * b, [t] * b) - skipped - not_gemm
    assert gemm_flops(training_gemms(cfg, V, [s] * b, [t] * b)) == pytest.approx(expected)


def test_encoder_steps_only_the_sentences_still_going_and_the_decoder_all():
    shapes = training_gemms(tiny(ContextType.attention, layers=1), V, [3, 1], [1, 4])
    assert shapes[(2, HE, 3 * HE)] == 2  # step 0 of each direction: both sentences
    assert shapes[(1, HE, 3 * HE)] == 2 * 2  # steps 1 and 2: only the 3-token one
    assert shapes[(2, HD, 3 * HD + A)] == 4  # the decoder runs T = 4 steps over B = 2 rows (padded)
    assert shapes[(5, R, V)] == 1  # the output layer: the 5 real target positions in one chunk


def test_other_scores_are_refused():
    cfg = tiny(ContextType.attention)
    cfg.attention.score = "dot"
    with pytest.raises(ValueError, match="additive"):
        training_gemms(cfg, V, [2], [2])
