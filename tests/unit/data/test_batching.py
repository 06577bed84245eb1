"""Tests for pipeline.data.batching: the token-budgeted bucket sampler, collate and padding_fraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.batching import BucketBatchSampler, collate, padding_fraction
from pipeline.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

MAX_TOKENS = 400


@pytest.fixture(scope="module")
def lengths() -> tuple[np.ndarray, np.ndarray]:
    """Sentence lengths like a real corpus: mostly 5-40 pieces, a few very long."""
    rng = np.random.default_rng(7)
    src = rng.integers(1, 40, size=1500)
    tgt = np.clip(src + rng.integers(-5, 6, size=1500), 0, None)
    src[[10, 700]] = [450, 999]  # longer than the whole budget
    tgt[1200] = 600
    return src, tgt


def cost(batch: np.ndarray, src: np.ndarray, tgt: np.ndarray) -> int:
    """Padded positions of a batch as collate builds it: +1 for EOS (source) and BOS/EOS (target)."""
    return len(batch) * int(max(src[batch].max() + 1, tgt[batch].max() + 1))


def test_every_example_exactly_once_per_epoch(lengths):
    src, tgt = lengths
    sampler = BucketBatchSampler(src, tgt, MAX_TOKENS, seed=3)
    for epoch in range(3):
        flat = np.concatenate(sampler.batches(epoch))
        assert len(flat) == len(src)
        assert np.array_equal(np.sort(flat), np.arange(len(src)))


@pytest.mark.parametrize("max_sentences", [10**9, 7])
def test_batches_within_budget(lengths, max_sentences):
    src, tgt = lengths
    sampler = BucketBatchSampler(src, tgt, MAX_TOKENS, max_sentences=max_sentences, seed=0)
    batches = sampler.batches(0)
    over = [b for b in batches if cost(b, src, tgt) > MAX_TOKENS]
    # only the over-long examples exceed the budget, each alone in its batch
    assert sorted(int(b[0]) for b in over) == [10, 700, 1200]
    assert all(len(b) == 1 for b in over)
    assert max(len(b) for b in batches) <= max_sentences
    # and the budget is used: batches are not needlessly small
    if max_sentences > len(src):
        assert np.mean([cost(b, src, tgt) for b in batches]) > 0.8 * MAX_TOKENS


def test_batches_group_similar_lengths(lengths):
    src, tgt = lengths
    batches = BucketBatchSampler(src, tgt, MAX_TOKENS, seed=0).batches(0)
    bucketed = padding_fraction(batches, src, tgt)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(src))
    sizes = np.cumsum([len(b) for b in batches])[:-1]
    random = padding_fraction(np.split(perm, sizes), src, tgt)
    assert bucketed < 0.15 < random


def test_order_reproducible_per_seed_and_epoch(lengths):
    src, tgt = lengths
    a = BucketBatchSampler(src, tgt, MAX_TOKENS, seed=11)
    b = BucketBatchSampler(src, tgt, MAX_TOKENS, seed=11)

    def same(x, y):
        return len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y))

    assert same(a.batches(2), b.batches(2))
    b.set_epoch(2)
    assert same(list(b), a.batches(2))
    assert len(b) == len(a.batches(2))
    assert not same(a.batches(0), a.batches(1))
    assert not same(a.batches(0), BucketBatchSampler(src, tgt, MAX_TOKENS, seed=12).batches(0))


def test_no_shuffle_is_sorted_by_length(lengths):
    src, tgt = lengths
    sampler = BucketBatchSampler(src, tgt, MAX_TOKENS, shuffle=False)
    flat = np.concatenate(sampler.batches(0))
    assert np.all(np.diff(tgt[flat]) >= 0)
    assert all(np.array_equal(p, q) for p, q in zip(sampler.batches(0), sampler.batches(5)))


@pytest.mark.parametrize("replicas", [2, 4])
def test_ddp_shards_are_disjoint_and_equal(lengths, replicas):
    src, tgt = lengths
    full = BucketBatchSampler(src, tgt, MAX_TOKENS, seed=5).batches(1)
    shards = [
        BucketBatchSampler(src, tgt, MAX_TOKENS, seed=5, num_replicas=replicas, rank=r).batches(1)
        for r in range(replicas)
    ]
    assert len({len(s) for s in shards}) == 1, "every rank runs the same number of steps"
    assert len(shards[0]) == len(full) // replicas
    flat = np.concatenate([np.concatenate(s) for s in shards])
    assert len(np.unique(flat)) == len(flat), "no example on two ranks"
    # together the shards cover the epoch up to fewer than `replicas` left-over batches
    served = {tuple(b) for s in shards for b in s}
    left_over = [b for b in full if tuple(b) not in served]
    assert len(left_over) == len(full) % replicas


def test_sampler_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in size"):
        BucketBatchSampler([1, 2, 3], [1, 2], MAX_TOKENS)


def test_collate_shapes_masks_and_specials():
    src = [[5, 6, 7], [8], []]
    tgt = [[9, 10], [11, 12, 13, 14], [15]]
    b = collate(src, tgt, [4, 0, 2])
    assert b.src.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID], [EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
    assert b.src_lens.tolist() == [4, 2, 1]
    assert b.src_mask.tolist() == [[True] * 4, [True, True, False, False], [True, False, False, False]]
    assert b.tgt_in.tolist() == [
        [BOS_ID, 9, 10, PAD_ID, PAD_ID],
        [BOS_ID, 11, 12, 13, 14],
        [BOS_ID, 15, PAD_ID, PAD_ID, PAD_ID],
    ]
    assert b.tgt_out.tolist() == [
        [9, 10, EOS_ID, PAD_ID, PAD_ID],
        [11, 12, 13, 14, EOS_ID],
        [15, EOS_ID, PAD_ID, PAD_ID, PAD_ID],
    ]
    assert b.ids.tolist() == [4, 0, 2]
    assert b.n_tgt_tokens == 3 + 5 + 2
    for t in (b.src, b.src_lens, b.tgt_in, b.tgt_out, b.ids):
        assert t.dtype == torch.long
    assert b.src_mask.dtype == torch.bool
    # tgt_out is tgt_in shifted left by one on every real position
    assert torch.equal(b.tgt_in[:, 1:][b.tgt_out[:, :-1] != EOS_ID], b.tgt_out[:, :-1][b.tgt_out[:, :-1] != EOS_ID])


def test_collate_without_targets():
    b = collate([[5, 6], [7]], None, [0, 1])
    assert b.src.tolist() == [[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]]
    assert b.tgt_in.tolist() == [[BOS_ID], [BOS_ID]]
    assert b.tgt_out.tolist() == [[EOS_ID], [EOS_ID]]


def test_collated_sampler_batches_match_the_cost_model(lengths):
    """What the sampler budgets is what collate allocates."""
    src, tgt = lengths
    rng = np.random.default_rng(1)
    src_seqs = [rng.integers(4, 100, size=n).tolist() for n in src]
    tgt_seqs = [rng.integers(4, 100, size=n).tolist() for n in tgt]
    for batch in BucketBatchSampler(src, tgt, MAX_TOKENS, seed=0).batches(0)[:50]:
        b = collate([src_seqs[i] for i in batch], [tgt_seqs[i] for i in batch], batch)
        assert len(batch) * max(b.src.size(1), b.tgt_in.size(1)) == cost(batch, src, tgt)
        assert b.src_lens.tolist() == (src[batch] + 1).tolist()


def test_padding_fraction():
    src = np.array([3, 3, 1, 5])
    tgt = np.array([2, 2, 2, 5])
    # equal lengths: no padding
    assert padding_fraction([np.array([0, 1])], src, tgt) == 0.0
    # [2, 3]: src 2 and 6 -> 2*6 positions, 8 real; tgt 3 and 6 -> 2*6 positions, 9 real
    assert padding_fraction([np.array([2, 3])], src, tgt) == pytest.approx(1 - 17 / 24)
    # summed over batches, not averaged per batch
    assert padding_fraction([np.array([0, 1]), np.array([2, 3])], src, tgt) == pytest.approx(1 - (14 + 17) / (14 + 24))
    assert padding_fraction([], src, tgt) == 0.0


def reference_batches(
    src: np.ndarray, tgt: np.ndarray, max_tokens: int, max_sentences: int, seed: int, epoch: int, shuffle: bool
) -> list[np.ndarray]:
    """The sampler as it was before the window-per-batch cut: a Python walk over every example."""
    src_lens, tgt_lens = np.asarray(src, dtype=np.int32) + 1, np.asarray(tgt, dtype=np.int32) + 1
    rng = np.random.default_rng([seed, epoch])
    n = len(src_lens)
    tie = rng.permutation(n) if shuffle else np.arange(n)
    order = np.lexsort((tie, src_lens, tgt_lens))
    width = np.maximum(src_lens[order], tgt_lens[order])
    batches, start, widest = [], 0, 0
    for k in range(n):
        w = max(widest, int(width[k]))
        size = k - start + 1
        if k > start and (w * size > max_tokens or size > max_sentences):
            batches.append(order[start:k])
            start, w = k, int(width[k])
        widest = w
    if start < n:
        batches.append(order[start:])
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


@pytest.mark.parametrize(
    ("max_tokens", "max_sentences", "shuffle"),
    [(MAX_TOKENS, 10**9, True), (MAX_TOKENS, 7, True), (MAX_TOKENS, 1, False), (37, 10**9, True), (5000, 64, False)],
)
def test_batches_are_the_same_as_the_example_by_example_walk(lengths, max_tokens, max_sentences, shuffle):
    """Cutting batch by batch (a window each) gives exactly the batches of the old per-example walk."""
    src, tgt = lengths
    sampler = BucketBatchSampler(src, tgt, max_tokens, max_sentences=max_sentences, seed=4, shuffle=shuffle)
    for epoch in (0, 1):
        got = sampler.batches(epoch)
        want = reference_batches(src, tgt, max_tokens, max_sentences, 4, epoch, shuffle)
        assert len(got) == len(want)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_batches_are_int32_views_of_one_order_array(lengths):
    """An epoch costs 4 bytes an example plus a small object per batch, not a separate array per batch."""
    src, tgt = lengths
    batches = BucketBatchSampler(src, tgt, MAX_TOKENS, seed=0).batches(0)
    assert {b.dtype for b in batches} == {np.dtype(np.int32)}
    assert len({id(b.base) for b in batches}) == 1
    assert sum(len(b) for b in batches) == len(batches[0].base) == len(src)
