"""grow-diag-final-and: what each of its three steps adds, and what it never adds."""

from __future__ import annotations

from pipeline.alignment.symmetrize import grow_diag_final_and


def test_links_both_directions_agree_on_are_kept():
    assert grow_diag_final_and({(0, 0), (1, 1)}, {(0, 0), (1, 1)}) == {(0, 0), (1, 1)}


def test_grow_diag_adds_a_union_neighbour_that_covers_an_unaligned_word():
    # source word 1 translates as two target words (1, 2): forward found (1, 2), reverse did not
    forward = {(0, 0), (1, 1), (1, 2)}
    reverse = {(0, 0), (1, 1)}
    assert grow_diag_final_and(forward, reverse) == {(0, 0), (1, 1), (1, 2)}


def test_a_union_link_between_two_aligned_words_is_not_added():
    # (0, 1) neighbours (0, 0) but both its words are aligned already
    forward = {(0, 0), (1, 1), (0, 1)}
    reverse = {(0, 0), (1, 1)}
    assert grow_diag_final_and(forward, reverse) == {(0, 0), (1, 1)}


def test_final_and_adds_an_isolated_link_only_when_both_words_are_unaligned():
    forward = {(0, 0), (3, 4)}  # (3, 4) touches nothing kept: only final-and can add it
    reverse = {(0, 0), (3, 0)}  # (3, 0): its target word 0 is aligned, so not added
    assert grow_diag_final_and(forward, reverse) == {(0, 0), (3, 4)}


def test_disjoint_directions_give_links_of_both():
    assert grow_diag_final_and({(0, 0)}, {(1, 1)}) == {(0, 0), (1, 1)}


def test_no_links_give_none():
    assert grow_diag_final_and(set(), set()) == set()
