"""A copy task that a tiny real model learns in a few seconds: distinct symbols in, the same out.

Shared by the search tests (a trained model must reproduce held-out inputs exactly) and the int8
tests (quantisation must not change what such a model translates).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.data.batching import collate
from pipeline.data.tokenizer import PAD_ID


def copy_inputs(n: int, vocab: int, generator: torch.Generator) -> list[list[int]]:
    """``n`` sequences of 2-7 distinct symbols from 4..vocab-1 (repeats make copying needlessly hard
    for a model this small)."""
    lengths = torch.randint(2, 8, (n,), generator=generator).tolist()
    return [(torch.randperm(vocab - 4, generator=generator)[:k] + 4).tolist() for k in lengths]


def train_copy(model: torch.nn.Module, vocab: int, generator: torch.Generator, max_steps: int = 800) -> int:
    """Train ``model`` to copy with Adam until 10 consecutive batch losses are tiny (~250 steps,
    ~3 s); returns the steps taken."""
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    recent: list[float] = []
    for step in range(1, max_steps + 1):
        seqs = copy_inputs(32, vocab, generator)
        b = collate(seqs, seqs, list(range(32)))
        logits, _ = model(b.src, b.src_lens, b.tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, vocab), b.tgt_out.reshape(-1), ignore_index=PAD_ID)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        recent = (recent + [loss.item()])[-10:]
        if len(recent) == 10 and max(recent) < 1.5e-3:
            return step
    return max_steps
