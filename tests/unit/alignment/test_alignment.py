"""Word-level merge, hard links, Pharaoh output, AER and diagnostics on hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.alignment.links import (
    GoldAlignment,
    aer_counts,
    diagnostics,
    diagonal_links,
    hard_links,
    merge_to_words,
    pharaoh,
    read_talp,
    word_index_of_pieces,
    words_of_pieces,
)
from pipeline.errors import UserError


def test_pieces_map_to_whitespace_words():
    pieces = ["▁Ein", "▁Hund", "e", "▁läuft", "▁", "."]
    assert word_index_of_pieces(pieces) == [0, 1, 1, 2, 3, 3]
    assert words_of_pieces(pieces) == ["Ein", "Hunde", "läuft", "."]


def test_merge_sums_over_source_pieces_and_averages_over_target_pieces():
    # target pieces: "▁the" "▁dog" "s" + EOS; source pieces: "▁die" "▁Hund" "e" + EOS
    w = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.0, 0.5, 0.3, 0.2],
            [0.2, 0.2, 0.4, 0.2],
            [0.0, 0.0, 0.1, 0.9],
        ]
    )
    words = merge_to_words(w, [0, 1, 1], [0, 1, 1])
    expected = np.array(
        [
            [0.7, 0.2, 0.1],
            [(0.0 + 0.2) / 2, (0.8 + 0.6) / 2, (0.2 + 0.2) / 2],
            [0.0, 0.1, 0.9],
        ]
    )
    np.testing.assert_allclose(words, expected)
    np.testing.assert_allclose(words.sum(axis=1), 1.0)


def test_merge_rejects_a_matrix_that_does_not_fit_the_pieces():
    with pytest.raises(ValueError, match="does not fit"):
        merge_to_words(np.ones((3, 3)), [0, 1, 1], [0])


def test_hard_links_take_the_argmax_source_word_and_skip_eos():
    w = np.array(
        [
            [0.1, 0.8, 0.1],  # target 0 -> source 1
            [0.2, 0.1, 0.7],  # target 1: EOS column is largest, but EOS is excluded -> source 0
            [0.0, 0.0, 1.0],  # EOS row: no link
        ]
    )
    assert hard_links(w) == [(1, 0), (0, 1)]
    assert pharaoh(hard_links(w)) == "0-1 1-0"


def test_diagonal_baseline_spreads_target_words_over_the_source():
    assert diagonal_links(4, 2) == [(1, 0), (3, 1)]
    assert diagonal_links(2, 4) == [(0, 0), (0, 1), (1, 2), (1, 3)]
    assert diagonal_links(0, 3) == []


def test_talp_reader_is_one_indexed_and_can_swap_sides(tmp_path):
    gold = tmp_path / "gold.talp"
    gold.write_text("1-1 2p3\n\n")
    first = read_talp(gold)
    assert first[0].sure == {(0, 0)} and first[0].possible == {(0, 0), (1, 2)}
    assert first[1].sure == set()
    assert read_talp(gold, source_first=False)[0].possible == {(0, 0), (2, 1)}
    gold.write_text("1-1 0-2\n")
    with pytest.raises(UserError, match=r"gold.talp:1: bad link '0-2'"):
        read_talp(gold)


def test_aer_matches_a_hand_computed_value():
    gold = [GoldAlignment(sure={(0, 0), (1, 1)}, possible={(0, 0), (1, 1), (2, 1)})]
    hyp = [{(0, 0), (2, 1), (2, 2)}]
    # |A|=3, |S|=2, |A∩S|=1, |A∩P|=2 -> AER = 1 - 3/5 = 0.4; precision 2/3; recall 1/2
    scores = aer_counts(hyp, gold)
    assert scores["aer"] == pytest.approx(0.4)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(0.5)
    assert aer_counts([{(0, 0), (1, 1)}], gold)["aer"] == 0.0


def test_diagnostics_on_a_hand_built_set():
    w = np.array(
        [
            [0.9, 0.0, 0.0, 0.1],  # -> 0
            [0.0, 0.0, 0.8, 0.2],  # -> 2
            [0.0, 0.6, 0.0, 0.4],  # -> 1 (goes backwards)
            [0.0, 0.0, 0.0, 1.0],  # EOS row
        ]
    )
    d = diagnostics([w])
    assert d["monotonicity"] == pytest.approx(0.5)
    assert d["coverage"] == pytest.approx(1.0) and d["uncovered_words"] == 0
    assert d["eos_mass"] == pytest.approx((0.1 + 0.2 + 0.4) / 3)
    one_hot = np.eye(3)
    assert diagnostics([one_hot])["mean_entropy"] == pytest.approx(0.0, abs=1e-9)
