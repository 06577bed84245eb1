"""Attention matrices as word alignments: word-level merge, hard links, AER, diagnostics.

Conventions (shared with :class:`pipeline.decoding.search.Hypothesis`): an attention matrix is
``[target rows, source columns]``; the last row is the target EOS and the last
column the source EOS.  Everything here is plain numpy on small matrices.

**Word-level merge rule.**  A sentencepiece piece that starts with ``▁`` opens a
new whitespace word; every other piece continues the current one.  The weight of
target word t on source word s is the *sum* over the pieces of s (attention mass
is additive across the pieces a word was split into) *averaged* over the pieces of
t (each target piece is one distribution over the source; a word's distribution
is their mean).  Rows therefore still sum to 1.  The EOS row and column stay as
their own "words".

**Hard alignment rule.**  Each target word (EOS row excluded) links to the source
word with the largest merged weight, the source EOS column excluded: exactly one
link per target word, as in reading off the darkest cell of each row of
Bahdanau et al. 2015, fig. 3.  Links are written in Pharaoh form ``s-t``, 0-indexed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import UserError

WORD_START = "\u2581"  # sentencepiece's whitespace marker


def word_index_of_pieces(pieces: Sequence[str]) -> list[int]:
    """The 0-based whitespace-word index of each piece (a ``▁``-initial piece opens a word)."""
    index, current = [], -1
    for piece in pieces:
        if piece.startswith(WORD_START) or current < 0:
            current += 1
        index.append(current)
    return index


def piece_labels(pieces: Sequence[str], surfaces: Sequence[str] | None = None) -> list[str]:
    """A readable label per piece: its surface text when known, else the piece without ``▁``."""
    texts = surfaces if surfaces is not None else [p.replace(WORD_START, "") for p in pieces]
    return [t.strip() or WORD_START for t in texts]


def words_of_pieces(pieces: Sequence[str], surfaces: Sequence[str] | None = None) -> list[str]:
    """The whitespace words the pieces spell, one per word index (surfaces used when known)."""
    texts = surfaces if surfaces is not None else [p.replace(WORD_START, "") for p in pieces]
    words: list[str] = []
    for text, w in zip(texts, word_index_of_pieces(pieces)):
        if w == len(words):
            words.append(text.strip())
        else:
            words[w] += text.strip()
    return words


def merge_to_words(weights: np.ndarray, src_word_of: Sequence[int], tgt_word_of: Sequence[int]) -> np.ndarray:
    """Merge ``[tgt pieces + 1, src pieces + 1]`` attention into ``[tgt words + 1, src words + 1]``.

    ``src_word_of`` / ``tgt_word_of`` give each piece's word (EOS excluded); sum over
    source pieces, mean over target pieces (see the module docstring).
    """
    n_t, n_s = len(tgt_word_of), len(src_word_of)
    if weights.shape != (n_t + 1, n_s + 1):
        raise ValueError(f"attention {weights.shape} does not fit {n_t} target and {n_s} source pieces (+EOS)")
    s_groups = np.asarray(list(src_word_of) + [max(src_word_of, default=-1) + 1])
    t_groups = np.asarray(list(tgt_word_of) + [max(tgt_word_of, default=-1) + 1])
    to_src_words = np.zeros((n_s + 1, s_groups[-1] + 1))
    to_src_words[np.arange(n_s + 1), s_groups] = 1.0
    summed = weights @ to_src_words  # [tgt pieces + 1, src words + 1]
    to_tgt_words = np.zeros((t_groups[-1] + 1, n_t + 1))
    to_tgt_words[t_groups, np.arange(n_t + 1)] = 1.0
    to_tgt_words /= to_tgt_words.sum(axis=1, keepdims=True)
    return to_tgt_words @ summed


def hard_links(word_weights: np.ndarray) -> list[tuple[int, int]]:
    """``(source word, target word)`` links: the argmax source word of each target word (EOS excluded)."""
    core = word_weights[:-1, :-1]
    if core.shape[1] == 0:
        return []
    return [(int(s), t) for t, s in enumerate(core.argmax(axis=1))]


def pharaoh(links: Iterable[tuple[int, int]]) -> str:
    """``"0-0 1-2 ..."``: 0-indexed source-target links, sorted."""
    return " ".join(f"{s}-{t}" for s, t in sorted(links))


def diagonal_links(n_src: int, n_tgt: int) -> list[tuple[int, int]]:
    """The baseline that ignores the model: target word t links to the proportional source position."""
    if n_src == 0:
        return []
    return [(min(n_src - 1, int((t + 0.5) * n_src / n_tgt)), t) for t in range(n_tgt)]


@dataclass
class GoldAlignment:
    """One sentence's gold links, 0-indexed ``(source, target)``; ``possible`` includes ``sure``."""

    sure: set[tuple[int, int]]
    possible: set[tuple[int, int]]


def read_talp(path: str | Path, source_first: bool = True) -> list[GoldAlignment]:
    """Read a talp/Pharaoh gold file: ``i-j`` sure, ``ipj`` possible, **1-indexed**.

    ``i`` indexes the file's first-named language; ``source_first=False`` swaps the
    pair when that language is the model's target.
    """
    gold = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            sure, possible = set(), set()
            for token in line.split():
                sep = "-" if "-" in token else "p"
                left, _, right = token.partition(sep)
                if not (left.isdigit() and right.isdigit()) or int(left) < 1 or int(right) < 1:
                    raise UserError(f"{path}:{lineno}: bad link {token!r}; expected 1-indexed i-j (sure) or ipj")
                i, j = int(left) - 1, int(right) - 1
                link = (i, j) if source_first else (j, i)
                possible.add(link)
                if sep == "-":
                    sure.add(link)
            gold.append(GoldAlignment(sure, possible))
    return gold


def aer_counts(hyp: Iterable[set[tuple[int, int]]], gold: Sequence[GoldAlignment]) -> dict:
    """Corpus AER (Och & Ney 2003) with precision and recall, from summed counts.

    AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|); precision = |A∩P| / |A|; recall = |A∩S| / |S|.
    """
    a = s = a_s = a_p = 0
    for links, g in zip(hyp, gold, strict=True):
        a += len(links)
        s += len(g.sure)
        a_s += len(links & g.sure)
        a_p += len(links & g.possible)
    return {
        "aer": 1.0 - (a_s + a_p) / (a + s) if a + s else 0.0,
        "precision": a_p / a if a else 0.0,
        "recall": a_s / s if s else 0.0,
        "links": a,
        "sure": s,
    }


def aer_by_half(hyp: Sequence[set[tuple[int, int]]], gold: Sequence[GoldAlignment]) -> dict:
    """:func:`aer_counts` over all sentences, and over each half of the gold set.

    Extraction rules are chosen on the first half (``select``) and reported on the second
    (``report``), so that a rule tuned to the gold does not report its own tuning.
    """
    half = len(gold) // 2
    return {
        **aer_counts(hyp, gold),
        "select": aer_counts(hyp[:half], gold[:half]),
        "report": aer_counts(hyp[half:], gold[half:]),
    }


def check_gold_fits(
    gold: Sequence[GoldAlignment], src_words: Sequence[int], tgt_words: Sequence[int], path: str
) -> None:
    """One line naming the first gold link outside its sentence pair (word counts per sentence)."""
    if len(gold) != len(src_words):
        raise UserError(
            f"{path} has {len(gold)} lines but the input has {len(src_words)} sentences; use that set's files"
        )
    for lineno, (g, n_s, n_t) in enumerate(zip(gold, src_words, tgt_words), 1):
        outside = sorted(link for link in g.possible if link[0] >= n_s or link[1] >= n_t)
        if outside:
            s, t = outside[0]
            raise UserError(
                f"{path}:{lineno}: link {s + 1}-{t + 1} (1-indexed, source-target) is outside the sentence pair "
                f"of {n_s} source and {n_t} target words; check the gold file matches "
                "src_file/ref_file (and gold_source_first)"
            )


def diagnostics(word_matrices: Sequence[np.ndarray]) -> dict:
    """How sharp, monotone and complete the word-level attention of a set of sentences is.

    mean_entropy    mean entropy (nats) of each target word's distribution, EOS column included
    eos_mass        mean weight that target words put on the source EOS
    monotonicity    fraction of adjacent target-word pairs whose argmax source word does not go backwards
    coverage        fraction of source words that are the argmax of at least one target word
    uncovered_words source words that no target word attends to most (count over the set)
    """
    entropies, eos, steps, monotone, covered, n_src = [], [], 0, 0, 0, 0
    for w in word_matrices:
        rows = w[:-1]
        if rows.shape[0] == 0:
            continue
        p = np.clip(rows, 1e-12, 1.0)
        entropies.extend((-(p * np.log(p)).sum(axis=1)).tolist())
        eos.extend(rows[:, -1].tolist())
        argmax = [s for s, _ in hard_links(w)]
        steps += max(len(argmax) - 1, 0)
        monotone += sum(b >= a for a, b in zip(argmax, argmax[1:]))
        covered += len(set(argmax))
        n_src += w.shape[1] - 1
    return {
        "sentences": len(word_matrices),
        "mean_entropy": float(np.mean(entropies)) if entropies else 0.0,
        "eos_mass": float(np.mean(eos)) if eos else 0.0,
        "monotonicity": monotone / steps if steps else 1.0,
        "coverage": covered / n_src if n_src else 0.0,
        "uncovered_words": n_src - covered,
    }
