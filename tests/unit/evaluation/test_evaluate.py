"""BLEU-by-length buckets and output names."""

from __future__ import annotations

from pipeline.config import DecodeConfig, Strategy
from pipeline.evaluation.evaluate import bleu_by_length, decode_tag, length_buckets


def test_buckets_cover_every_length_and_respect_the_minimum():
    lengths = [3] * 5 + [9] * 60 + [11] * 70 + [13] * 4 + [20] * 55 + [30] * 2
    buckets = length_buckets(lengths, [8, 10, 12, 14, 17], min_size=50)
    assert buckets[0][0] == 1 and buckets[-1][1] == 30
    assert all(b[1] + 1 == c[0] for b, c in zip(buckets, buckets[1:]))  # contiguous, no gaps
    sizes = [sum(lo <= n <= hi for n in lengths) for lo, hi in buckets]
    assert sum(sizes) == len(lengths) and min(sizes) >= 50


def test_buckets_keep_the_edges_when_all_are_full():
    lengths = [5] * 50 + [9] * 50 + [15] * 50
    assert length_buckets(lengths, [8, 10], 50) == [(1, 8), (9, 10), (11, 15)]


def test_bleu_by_length_scores_each_bucket():
    srcs = ["a b"] * 3 + ["a b c d e f"] * 3
    refs = ["the cat sat on the mat today"] * 6
    hyps = refs[:3] + ["dog"] * 3
    rows = bleu_by_length(srcs, hyps, refs, [2], min_size=1, n_bootstrap=1)
    assert [(r["min_len"], r["max_len"], r["n"]) for r in rows] == [(1, 2, 3), (3, 6, 3)]
    assert rows[0]["bleu"] > 99 and rows[1]["bleu"] < 1


def test_decode_tag():
    assert decode_tag(DecodeConfig()) == "greedy"
    assert decode_tag(DecodeConfig(strategy=Strategy.beam, beam_size=5, length_penalty=0.0)) == "beam5"
    assert decode_tag(DecodeConfig(strategy=Strategy.beam, beam_size=4, length_penalty=0.6)) == "beam4-lp0.6"
