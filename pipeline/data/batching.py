"""Length-bucketed, token-budgeted batches.

RNN training cost is proportional to *padded* positions, so batches group
sentences of similar length: examples are sorted by (target, source) length with
a seeded random tie-break, cut greedily into batches whose padded size stays
within ``max_tokens``, and the batch order is shuffled per epoch.  The sampler
only ever sees two compact integer arrays of lengths, never the text, so it scales
to corpora that do not fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Batch:
    """A padded batch.  Shapes: B sentences, S source and T target positions.

    src      [B, S] long   source pieces + EOS, padded with PAD_ID
    src_lens [B]    long   true source lengths (including EOS)
    src_mask [B, S] bool   True on real positions
    tgt_in   [B, T] long   BOS + target pieces (decoder input, teacher forcing)
    tgt_out  [B, T] long   target pieces + EOS (what the decoder must predict)
    ids      [B]    long   row indices of the examples in their split
    """

    src: torch.Tensor
    src_lens: torch.Tensor
    src_mask: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    ids: torch.Tensor

    @property
    def n_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD_ID).sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self._tensors()))

    def pin_memory(self) -> Batch:
        return Batch(*(t.pin_memory() for t in self._tensors()))

    def _tensors(self) -> tuple:
        return (self.src, self.src_lens, self.src_mask, self.tgt_in, self.tgt_out, self.ids)


def collate(
    src_seqs: Sequence[Sequence[int]],
    tgt_seqs: Sequence[Sequence[int]] | None,
    ids: Sequence[int],
) -> Batch:
    """Pad piece-id lists into a :class:`Batch`; EOS ends sources and targets."""
    n = len(src_seqs)
    src_lens = torch.tensor([len(s) + 1 for s in src_seqs], dtype=torch.long)
    src = torch.full((n, int(src_lens.max())), PAD_ID, dtype=torch.long)
    for i, s in enumerate(src_seqs):
        src[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        src[i, len(s)] = EOS_ID
    if tgt_seqs is None:
        tgt_seqs = [[] for _ in range(n)]
    t_len = max(len(t) for t in tgt_seqs) + 1
    tgt_in = torch.full((n, t_len), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((n, t_len), PAD_ID, dtype=torch.long)
    for i, t in enumerate(tgt_seqs):
        tt = torch.as_tensor(t, dtype=torch.long)
        tgt_in[i, 0] = BOS_ID
        tgt_in[i, 1 : len(t) + 1] = tt
        tgt_out[i, : len(t)] = tt
        tgt_out[i, len(t)] = EOS_ID
    mask = torch.arange(src.size(1))[None, :] < src_lens[:, None]
    return Batch(src, src_lens, mask, tgt_in, tgt_out, torch.as_tensor(ids, dtype=torch.long))


class BucketBatchSampler:
    """Yields lists of example indices, each batch within the token budget.

    A batch of b examples costs ``b * max(longest source, longest target)`` padded
    positions (+1 each for BOS/EOS); that cost stays <= ``max_tokens``.  A single
    example longer than the budget forms a batch of its own rather than being lost.

    For a given ``seed`` and ``epoch`` the order is always the same, so training
    resumes mid-epoch exactly.  With ``num_replicas > 1`` (DDP) every rank gets a
    disjoint share of the epoch's batches, all shares of equal count.
    """

    def __init__(
        self,
        src_lens: Sequence[int] | np.ndarray,
        tgt_lens: Sequence[int] | np.ndarray,
        max_tokens: int,
        max_sentences: int = 10**9,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.src_lens = np.asarray(src_lens, dtype=np.int32) + 1
        self.tgt_lens = np.asarray(tgt_lens, dtype=np.int32) + 1
        if self.src_lens.shape != self.tgt_lens.shape:
            raise ValueError("src_lens and tgt_lens differ in size")
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences
        self.seed = seed
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """All batches of an epoch for this rank, in the order they are served.

        Each batch is a view into one int32 array of the epoch's example order (4 bytes
        an example), not an array of its own.
        """
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.src_lens)
        tie = rng.permutation(n) if self.shuffle else np.arange(n)
        order = np.lexsort((tie, self.src_lens, self.tgt_lens)).astype(_index_dtype(n))
        del tie
        batches = self._cut(order)
        if self.shuffle:
            perm = rng.permutation(len(batches))
            batches = [batches[i] for i in perm]
        if self.num_replicas > 1:
            usable = len(batches) - len(batches) % self.num_replicas
            batches = batches[self.rank : usable : self.num_replicas]
        return batches

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        """Cut ``order`` greedily: a batch ends just before the example that would break the budget.

        The same cuts as walking the examples one by one in Python, which took 19 s an
        epoch at 5M pairs; this walks batch by batch and looks at a window per batch.
        Every width is >= 1, so a batch starting with width w0 holds at most
        ``max(1, min(max_tokens // w0, max_sentences))`` examples: the example that
        breaks the budget lies within a window of one more.
        """
        width = np.maximum(self.src_lens[order], self.tgt_lens[order])
        n = len(order)
        batches: list[np.ndarray] = []
        start = 0
        while start < n:
            limit = max(1, min(self.max_tokens // int(width[start]), self.max_sentences))
            window = width[start : start + limit + 1]
            size = np.arange(1, len(window) + 1)
            over = (np.maximum.accumulate(window) * size > self.max_tokens) | (size > self.max_sentences)
            over[0] = False  # an example longer than the budget still forms a batch of its own
            end = start + (int(over.argmax()) if over.any() else len(window))
            batches.append(order[start:end])
            start = end
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def _index_dtype(n: int) -> type[np.integer]:
    """The narrowest signed integer type that indexes ``n`` examples (int32 up to 2**31)."""
    return np.int32 if n <= np.iinfo(np.int32).max else np.int64


def padding_fraction(batches: Sequence[np.ndarray], src_lens: np.ndarray, tgt_lens: np.ndarray) -> float:
    """Padded positions as a fraction of all positions (source and target sides)."""
    src = np.asarray(src_lens) + 1
    tgt = np.asarray(tgt_lens) + 1
    real = padded = 0
    for b in batches:
        real += int(src[b].sum() + tgt[b].sum())
        padded += len(b) * int(src[b].max() + tgt[b].max())
    return 1.0 - real / padded if padded else 0.0
