"""From forced attention to word links: each knob of align.extraction changes what it should."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.alignment.extraction import combined, extract_links, word_weights
from pipeline.config import Combine, ExtractionConfig, LinkRule, SourceMerge


def attention(rows: list[list[float]]) -> np.ndarray:
    """A [tgt + 1, src + 1] matrix; each row is given over the words and the EOS column last."""
    return np.asarray(rows, dtype=np.float32)


ONE_PIECE_EACH = [0, 1, 2]


def test_row_i_is_word_i_and_shift_takes_row_i_plus_one():
    # rows point one word late: row i+1 looks at source word i (the model looked after writing y_i)
    w = attention([[0.1, 0.1, 0.7, 0.1], [0.8, 0.1, 0.0, 0.1], [0.1, 0.8, 0.0, 0.1], [0.0, 0.1, 0.8, 0.1]])
    plain = extract_links(w, ONE_PIECE_EACH, ONE_PIECE_EACH, ExtractionConfig(rule=LinkRule.argmax))
    shifted = extract_links(w, ONE_PIECE_EACH, ONE_PIECE_EACH, ExtractionConfig(shift=True, rule=LinkRule.argmax))
    assert plain == {(2, 0), (0, 1), (1, 2)}
    assert shifted == {(0, 0), (1, 1), (2, 2)}


def test_eos_mass_is_removed_and_rows_renormalised_before_a_threshold():
    w = attention([[0.3, 0.2, 0.5], [0.1, 0.1, 0.8], [0.0, 0.0, 1.0]])  # 2 source words + EOS
    merged = word_weights(w, [0, 1], [0, 1], ExtractionConfig())
    np.testing.assert_allclose(merged, [[0.6, 0.4], [0.5, 0.5]], atol=1e-6)
    assert extract_links(w, [0, 1], [0, 1], ExtractionConfig(rule=LinkRule.threshold, threshold=0.55)) == {(0, 0)}


def test_source_merge_sum_favours_a_word_split_into_pieces_and_mean_does_not():
    # source: word 0 in three pieces of 0.2 each, word 1 in one piece of 0.4
    w = attention([[0.2, 0.2, 0.2, 0.4, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    src_word_of = [0, 0, 0, 1]
    by_sum = ExtractionConfig(source_merge=SourceMerge.sum, rule=LinkRule.argmax)
    by_mean = ExtractionConfig(source_merge=SourceMerge.mean, rule=LinkRule.argmax)
    assert extract_links(w, src_word_of, [0], by_sum) == {(0, 0)}
    assert extract_links(w, src_word_of, [0], by_mean) == {(1, 0)}


def test_target_pieces_of_one_word_are_averaged_into_one_row():
    w = attention([[0.9, 0.1, 0.0], [0.3, 0.7, 0.0], [0.0, 0.0, 1.0]])
    merged = word_weights(w, [0, 1], [0, 0], ExtractionConfig())  # two target pieces, one word
    np.testing.assert_allclose(merged, [[0.6, 0.4]], atol=1e-6)


# two target words both attend to source word 0 most; source word 1 is the second choice of word 1
TWO_TO_ONE = attention([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    "rule, links",
    [
        (LinkRule.argmax, {(0, 0), (0, 1)}),
        (LinkRule.column, {(0, 0), (1, 1)}),
        (LinkRule.intersection, {(0, 0)}),
        (LinkRule.grow_diag_final_and, {(0, 0), (0, 1), (1, 1)}),
    ],
)
def test_each_rule_reads_rows_columns_or_both(rule, links):
    assert extract_links(TWO_TO_ONE, [0, 1], [0, 1], ExtractionConfig(rule=rule)) == links


def test_a_matrix_that_does_not_fit_the_pieces_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        extract_links(TWO_TO_ONE, [0, 1, 2], [0, 1], ExtractionConfig())


# a reverse model's [source words, target words] matrix: each source word's row over the target words
REVERSE = np.asarray([[0.9, 0.1], [0.2, 0.8]])


@pytest.mark.parametrize(
    "combine, links",
    [
        (Combine.intersection, {(0, 0)}),  # forward (argmax) {(0, 0), (0, 1)}; reverse {(0, 0), (1, 1)}
        (Combine.union, {(0, 0), (0, 1), (1, 1)}),
        (Combine.grow_diag_final_and, {(0, 0), (0, 1), (1, 1)}),
    ],
)
def test_a_reverse_model_is_the_second_direction(combine, links):
    forward = extract_links(TWO_TO_ONE, [0, 1], [0, 1], ExtractionConfig(rule=LinkRule.argmax))
    assert combined(forward, REVERSE, ExtractionConfig(rule=LinkRule.argmax, combine=combine)) == links
