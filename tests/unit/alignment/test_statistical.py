"""eflomal as the yardstick: it learns a lexicon from a corpus, and a missing eflomal is one line."""

from __future__ import annotations

import random
import sys

import pytest

from pipeline.alignment.links import GoldAlignment, aer_counts, diagonal_links
from pipeline.alignment.statistical import align_with_eflomal, corpus_words, usable_training_pairs
from pipeline.config import EflomalConfig
from pipeline.errors import UserError

pytest.importorskip("eflomal")


def synthetic_corpus(n: int, seed: int = 0) -> tuple[list[str], list[str], list[set[tuple[int, int]]]]:
    """Sentences of 3-8 words over a 40-word lexicon, translated word for word and then with each
    pair of adjacent words swapped where the first is an 'adjective' (ids below 10): a lexicon and
    a local reordering, which a diagonal cannot follow."""
    rng = random.Random(seed)
    srcs, tgts, links = [], [], []
    for _ in range(n):
        words = [rng.randrange(40) for _ in range(rng.randint(3, 8))]
        order = list(range(len(words)))
        i = 0
        while i < len(order) - 1:
            if words[order[i]] < 10:
                order[i], order[i + 1] = order[i + 1], order[i]
                i += 2
            else:
                i += 1
        srcs.append(" ".join(f"s{w}" for w in words))
        tgts.append(" ".join(f"t{words[j]}" for j in order))
        links.append({(j, t) for t, j in enumerate(order)})
    return srcs, tgts, links


def test_eflomal_learns_the_lexicon_and_beats_the_diagonal():
    srcs, tgts, links = synthetic_corpus(600)
    settings = EflomalConfig()
    train = usable_training_pairs(srcs[:560], tgts[:560], settings)
    result = align_with_eflomal(srcs[560:], tgts[560:], train, settings)
    gold = [GoldAlignment(g, g) for g in links[560:]]
    eflomal_aer = aer_counts(result.symmetrised, gold)["aer"]
    diagonal = [set(diagonal_links(len(s.split()), len(t.split()))) for s, t in zip(srcs[560:], tgts[560:])]
    assert eflomal_aer < 0.1, eflomal_aer
    assert aer_counts(diagonal, gold)["aer"] > 0.3
    assert len(result.forward) == len(result.reverse) == len(result.symmetrised) == 40
    assert result.train_pairs == 560


def test_training_pairs_are_tokenised_lowercased_and_filtered():
    settings = EflomalConfig(max_words=4)
    pairs = usable_training_pairs(["Ein Hund.", "", "a b c d e"], ["A dog.", "x", "v w x y"], settings)
    assert pairs == [("ein hund .", "a dog .")]  # the empty side and the 5-word side are left out
    assert corpus_words("Zwei Männer, die lachen!") == "zwei männer , die lachen !"


def test_a_missing_eflomal_is_one_line_saying_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "eflomal", None)  # import eflomal raises ImportError
    with pytest.raises(UserError, match="pip install eflomal"):
        align_with_eflomal(["a b"], ["c d"], [], EflomalConfig())


def test_an_empty_scored_pair_is_one_line_naming_it():
    with pytest.raises(UserError, match="sentence pair 2 of the scored set has an empty side"):
        align_with_eflomal(["a b", "c"], ["c d", " "], [], EflomalConfig())
