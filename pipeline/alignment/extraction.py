"""From a forced-attention matrix to word links: the choices that decide an attention AER.

An attention row is not an alignment.  Four things stand between them, each a knob here
(``align.extraction`` in conf/align.yaml, where the chosen setting and its evidence are):

* **Which row belongs to which word** (``shift``).  RNNsearch scores the annotations with
  s_{i-1}, the state *before* y_i is known (Bahdanau et al. 2015, eq. 6 and appendix A.1.2), so
  row i is where the model looked to *predict* y_i.  With ``shift=true`` word y_i takes row i+1
  instead, computed once y_i has been read: where the model looked *after* writing it.
* **The end of sentence** (always): the target EOS row is dropped (or is the last word's row
  when shifted) and the source EOS column is removed, each row renormalised over the words.
* **Pieces to words** (``source_merge``): a source word's weight is the ``sum`` or the ``mean``
  of its pieces' weights; a target word's row is the mean of its pieces' rows.
* **Weights to links** (``rule``): ``argmax`` links each target word to its heaviest source word;
  ``column`` links each source word to the target word that weighs it most; ``intersection``
  keeps the links both agree on; ``grow_diag_final_and`` symmetrises the two as for a statistical
  aligner's two directions (:mod:`.symmetrize`); ``threshold`` keeps every weight >= ``threshold``.
* **Both directions** (``combine``, with ``align.reverse_checkpoint``): a model translating the
  other way force-decodes the source from the reference; its links, read by the same rules with
  the roles swapped, are combined with the forward model's by ``intersection``, ``union`` or
  ``grow_diag_final_and``, as a statistical aligner's two directions are.  Each model merges its
  own pieces to the whitespace words, so the two need not share a tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.alignment.symmetrize import Link, grow_diag_final_and
from pipeline.config import Combine, ExtractionConfig, LinkRule, SourceMerge


def word_weights(
    weights: np.ndarray, src_word_of: Sequence[int], tgt_word_of: Sequence[int], cfg: ExtractionConfig
) -> np.ndarray:
    """``[target words, source words]``, EOS gone, rows renormalised, from ``[tgt pieces + 1, src pieces + 1]``."""
    n_t, n_s = len(tgt_word_of), len(src_word_of)
    if weights.shape != (n_t + 1, n_s + 1):
        raise ValueError(f"attention {weights.shape} does not fit {n_t} target and {n_s} source pieces (+EOS)")
    rows = weights[1:] if cfg.shift else weights[:-1]  # one row per target piece
    core = rows[:, :-1].astype(np.float64)
    n_sw, n_tw = max(src_word_of, default=-1) + 1, max(tgt_word_of, default=-1) + 1
    to_src = np.zeros((n_s, n_sw))
    to_src[np.arange(n_s), list(src_word_of)] = 1.0
    if SourceMerge(cfg.source_merge) is SourceMerge.mean:
        to_src /= to_src.sum(axis=0, keepdims=True)
    to_tgt = np.zeros((n_tw, n_t))
    to_tgt[list(tgt_word_of), np.arange(n_t)] = 1.0
    to_tgt /= to_tgt.sum(axis=1, keepdims=True)
    merged = to_tgt @ core @ to_src
    return merged / np.maximum(merged.sum(axis=1, keepdims=True), 1e-12)


def links_of(merged: np.ndarray, cfg: ExtractionConfig) -> set[Link]:
    """``(source word, target word)`` links of a ``[target words, source words]`` matrix by ``cfg.rule``."""
    if merged.size == 0:
        return set()
    rule = LinkRule(cfg.rule)
    if rule is LinkRule.threshold:
        return {(int(s), int(t)) for t, s in zip(*np.nonzero(merged >= cfg.threshold))}
    by_row = {(int(s), t) for t, s in enumerate(merged.argmax(axis=1))}
    if rule is LinkRule.argmax:
        return by_row
    by_column = {(s, int(t)) for s, t in enumerate(merged.argmax(axis=0))}
    if rule is LinkRule.column:
        return by_column
    if rule is LinkRule.intersection:
        return by_row & by_column
    return grow_diag_final_and(by_row, by_column)


def extract_links(
    weights: np.ndarray, src_word_of: Sequence[int], tgt_word_of: Sequence[int], cfg: ExtractionConfig
) -> set[Link]:
    """Word links of one sentence pair's forced attention (pieces' word indices as from
    :func:`pipeline.alignment.links.word_index_of_pieces`)."""
    return links_of(word_weights(weights, src_word_of, tgt_word_of, cfg), cfg)


def combined(forward: set[Link], reverse_merged: np.ndarray, cfg: ExtractionConfig) -> set[Link]:
    """``forward`` links combined by ``cfg.combine`` with those of a reverse model's
    ``[source words, target words]`` matrix (its rows are the source words)."""
    reverse = {(row, column) for column, row in links_of(reverse_merged, cfg)}  # its rows are our source words
    how = Combine(cfg.combine)
    if how is Combine.intersection:
        return forward & reverse
    if how is Combine.union:
        return forward | reverse
    return grow_diag_final_and(forward, reverse)
