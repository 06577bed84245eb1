"""Tests for pipeline.decoding.search: batched greedy and beam search.

Most tests use small fake models implementing the same step interface as
``pipeline.model.seq2seq.Seq2Seq`` (encode / start / step / index_select), so that
the search logic is tested on exactly known distributions; the last tests train a
tiny real model on a copy task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from copytask import copy_inputs, train_copy
from torch import nn

from pipeline.config import DecodeConfig, Strategy
from pipeline.data.batching import collate
from pipeline.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from pipeline.decoding.search import (
    Hypothesis,
    beam_search,
    decode,
    gnmt_length_penalty,
    greedy_search,
    max_output_lengths,
)
from pipeline.fast import accelerate
from pipeline.fast.cpu_kernels import cpu_kernels
from pipeline.fast.search import kernel_top_log_probs

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["reference", "auto"])
def impl(request) -> str:
    """Every search test runs with the reference (``model.impl=reference``: torch's top-k) and with
    what ``model.impl=auto`` picks on the CPU (the C++ top-k step; for real models, also the fast
    recurrences)."""
    return request.param


@pytest.fixture
def top_k(impl):
    """The search's top-k step for ``impl``: None (the default, torch ops) or the C++ kernel."""
    if impl == "reference":
        return None
    kernels = cpu_kernels(torch.device("cpu"))
    assert kernels is not None, "the C++ kernels did not build: is g++ installed?"
    return kernel_top_log_probs(kernels)


# ----------------------------------------------------------------------------- fakes


@dataclass
class FakeEnc:
    out: torch.Tensor  # [B, S, H]
    mask: torch.Tensor  # [B, S] bool

    def index_select(self, idx: torch.Tensor) -> FakeEnc:
        return FakeEnc(self.out.index_select(0, idx), self.mask.index_select(0, idx))


@dataclass
class FakeState:
    h: torch.Tensor  # [B, H] float (or [B] long path code for PathModel)
    t: torch.Tensor  # [B] long, steps taken
    enc: FakeEnc
    log: list | None = None  # PathModel: records every index_select

    def index_select(self, idx: torch.Tensor, same_source: bool = False) -> FakeState:
        if self.log is not None:
            self.log.append(idx.clone())
        return FakeState(self.h.index_select(0, idx), self.t.index_select(0, idx), self.enc.index_select(idx), self.log)


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


class RandomStepModel(nn.Module):
    """A tiny random GRU decoder with dot-product attention, EOS growing more likely with t."""

    def __init__(
        self,
        vocab: int = 17,
        hidden: int = 16,
        attention: bool = True,
        eos_bias: float = 0.6,
        scale: float = 3.0,
        eos_shift: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.has_attention = attention
        self.src_emb = nn.Embedding(vocab, hidden)
        self.tgt_emb = nn.Embedding(vocab, hidden)
        self.cell = nn.GRUCell(hidden, hidden)
        self.out = nn.Linear(2 * hidden, vocab)
        self.eos_bias = eos_bias
        self.eos_shift = eos_shift
        self.scale = scale

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> FakeEnc:
        mask = torch.arange(src.size(1), device=src.device)[None, :] < src_lens[:, None]
        return FakeEnc(torch.tanh(self.src_emb(src)) * mask[..., None], mask)

    def start(self, enc: FakeEnc) -> FakeState:
        h = enc.out.sum(1) / enc.mask.sum(1, keepdim=True)
        return FakeState(h, torch.zeros(h.size(0), dtype=torch.long), enc)

    def step(self, prev: torch.Tensor, state: FakeState):
        h = self.cell(self.tgt_emb(prev), state.h)
        enc = state.enc
        if self.has_attention:
            attn = _masked_softmax(torch.einsum("bsh,bh->bs", enc.out, h) * 2.0, enc.mask)
            ctx = torch.einsum("bs,bsh->bh", attn, enc.out)
        else:
            attn, ctx = None, enc.out.sum(1) / enc.mask.sum(1, keepdim=True)
        logits = self.out(torch.cat([h, ctx], -1)) * self.scale
        logits[:, EOS_ID] += self.eos_shift + self.eos_bias * state.t.float()
        return logits, FakeState(h, state.t + 1, enc), attn


class FixedDistModel(nn.Module):
    """Every step returns the same distribution; attention is uniform over the source."""

    def __init__(self, probs: list[float], attention: bool = True) -> None:
        super().__init__()
        self.has_attention = attention
        self.register_buffer("logits", torch.tensor(probs).log())

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> FakeEnc:
        mask = torch.arange(src.size(1))[None, :] < src_lens[:, None]
        return FakeEnc(mask.float()[..., None], mask)

    def start(self, enc: FakeEnc) -> FakeState:
        b = enc.mask.size(0)
        return FakeState(torch.zeros(b, 1), torch.zeros(b, dtype=torch.long), enc)

    def step(self, prev: torch.Tensor, state: FakeState):
        attn = _masked_softmax(torch.zeros(state.enc.mask.shape), state.enc.mask) if self.has_attention else None
        return self.logits.expand(prev.size(0), -1).clone(), FakeState(state.h, state.t + 1, state.enc), attn


class PathModel(nn.Module):
    """Logits and attention are functions of a hash of the whole prefix (the "path code").

    The attention row after prefix p is softmax(ATTN[code(p)]) over the real source
    positions, so it identifies the path; a hypothesis carrying another beam's rows is
    caught by recomputing the rows from its own tokens.
    """

    P = 1009

    def __init__(self, vocab: int = 9, width: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.has_attention = True
        self.register_buffer("table", torch.randn(self.P, vocab, generator=g) * 1.5)
        self.register_buffer("attn_table", torch.randn(self.P, width, generator=g) * 3.0)
        self.selects: list[torch.Tensor] = []

    @classmethod
    def next_code(cls, code: torch.Tensor | int, tok: torch.Tensor | int):
        return (code * 31 + tok + 7) % cls.P

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> FakeEnc:
        mask = torch.arange(src.size(1))[None, :] < src_lens[:, None]
        return FakeEnc(mask.float()[..., None], mask)

    def start(self, enc: FakeEnc) -> FakeState:
        b = enc.mask.size(0)
        return FakeState(torch.zeros(b, dtype=torch.long), torch.zeros(b, dtype=torch.long), enc, self.selects)

    def step(self, prev: torch.Tensor, state: FakeState):
        code = self.next_code(state.h, prev)
        s = state.enc.mask.size(1)
        attn = _masked_softmax(self.attn_table[code, :s], state.enc.mask)
        return self.table[code].clone(), FakeState(code, state.t + 1, state.enc, state.log), attn

    def expected_attention(self, tokens: list[int], src_len: int) -> torch.Tensor:
        rows, code = [], 0
        for tok in [BOS_ID] + tokens:
            code = self.next_code(code, tok)
            rows.append(torch.softmax(self.attn_table[code, :src_len], -1))
        return torch.stack(rows)


def make_batch(lengths: list[int], vocab: int = 17, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    srcs = [torch.randint(4, vocab, (n,), generator=g).tolist() for n in lengths]
    return collate(srcs, None, list(range(len(srcs))))


def force_decode(model, src: torch.Tensor, src_len: int, tokens: list[int]):
    """Score ``tokens + EOS`` for one unpadded sentence: (sum log-prob, attention rows or None)."""
    with torch.no_grad():
        state = model.start(model.encode(src[None, :src_len], torch.tensor([src_len])))
        total, rows = 0.0, []
        for prev, nxt in zip([BOS_ID] + tokens, tokens + [EOS_ID]):
            logits, state, attn = model.step(torch.tensor([prev]), state)
            total += float(F.log_softmax(logits.float(), -1)[0, nxt])
            if attn is not None:
                rows.append(attn[0, :src_len])
    return total, (torch.stack(rows) if rows else None)


LENGTHS = [3, 9, 1, 6, 12, 4, 7, 2]

# ----------------------------------------------------------------------------- tests


def test_max_output_lengths_bounded_by_source() -> None:
    lens = torch.tensor([1, 4, 10, 100])
    assert max_output_lengths(lens, 50, 1.5).tolist() == [2, 6, 15, 50]
    assert max_output_lengths(torch.tensor([10]), 200, 1.1).tolist() == [11]  # no float-noise extra token
    assert gnmt_length_penalty(7, 0.0) == 1.0
    assert gnmt_length_penalty(7, 1.0) == pytest.approx(2.0)


@pytest.mark.parametrize("attention", [True, False])
def test_beam1_equals_greedy(attention: bool, top_k) -> None:
    model = RandomStepModel(attention=attention)
    batch = make_batch(LENGTHS)
    greedy = greedy_search(model, batch.src, batch.src_lens, max_len=50, max_len_ratio=2.0, top_k=top_k)
    beam = beam_search(
        model, batch.src, batch.src_lens, beam_size=1, length_penalty=0.0, max_len=50, max_len_ratio=2.0, top_k=top_k
    )
    assert len({len(h.tokens) for h in greedy}) > 2, "the fake should give varied output lengths"
    for g, (b,) in zip(greedy, beam):
        assert g.tokens == b.tokens
        assert g.log_prob == pytest.approx(b.log_prob, abs=1e-6)
        assert b.score == pytest.approx(b.log_prob)
        if attention:
            torch.testing.assert_close(g.attention, b.attention)


@pytest.mark.parametrize("attention", [True, False])
def test_attention_shape_and_rows(attention: bool, top_k) -> None:
    model = RandomStepModel(attention=attention)
    batch = make_batch(LENGTHS)
    greedy = greedy_search(model, batch.src, batch.src_lens, max_len=50, max_len_ratio=2.0, top_k=top_k)
    beam = beam_search(
        model,
        batch.src,
        batch.src_lens,
        beam_size=3,
        length_penalty=0.6,
        max_len=50,
        max_len_ratio=2.0,
        nbest=3,
        top_k=top_k,
    )
    hyps = greedy + [h for hs in beam for h in hs]
    lens = batch.src_lens.tolist() + [n for n in batch.src_lens.tolist() for _ in range(3)]
    for h, src_len in zip(hyps, lens):
        assert isinstance(h, Hypothesis)
        assert EOS_ID not in h.tokens and BOS_ID not in h.tokens and PAD_ID not in h.tokens
        if not attention:
            assert h.attention is None
            continue
        assert h.attention.shape == (len(h.tokens) + 1, src_len)
        assert h.attention.dtype == torch.float32 and not h.attention.is_inference()
        torch.testing.assert_close(h.attention.sum(-1), torch.ones(len(h.tokens) + 1))


def test_scores_match_force_decoding_and_padding_invariance(top_k) -> None:
    """Each hypothesis's log-prob and attention are those of its own tokens, decoded alone."""
    model = RandomStepModel()
    batch = make_batch(LENGTHS)
    beam = beam_search(
        model,
        batch.src,
        batch.src_lens,
        beam_size=4,
        length_penalty=1.0,
        max_len=50,
        max_len_ratio=2.0,
        nbest=4,
        top_k=top_k,
    )
    for i, hyps in enumerate(beam):
        n = int(batch.src_lens[i])
        for h in hyps:
            lp, attn = force_decode(model, batch.src[i], n, h.tokens)
            assert h.log_prob == pytest.approx(lp, abs=1e-4)
            assert h.score == pytest.approx(h.log_prob / gnmt_length_penalty(len(h.tokens) + 1, 1.0), abs=1e-4)
            torch.testing.assert_close(h.attention, attn, atol=1e-5, rtol=1e-4)
        alone = beam_search(
            model,
            batch.src[i : i + 1, :n],
            batch.src_lens[i : i + 1],
            beam_size=4,
            length_penalty=1.0,
            max_len=50,
            max_len_ratio=2.0,
            nbest=4,
            top_k=top_k,
        )[0]
        assert [h.tokens for h in alone] == [h.tokens for h in hyps]


def test_nbest_sorted_and_beam_beats_greedy(top_k) -> None:
    model = RandomStepModel(seed=3)
    batch = make_batch(LENGTHS, seed=4)
    greedy = greedy_search(model, batch.src, batch.src_lens, max_len=50, max_len_ratio=2.0, top_k=top_k)
    beam = beam_search(
        model,
        batch.src,
        batch.src_lens,
        beam_size=5,
        length_penalty=0.0,
        max_len=50,
        max_len_ratio=2.0,
        nbest=5,
        top_k=top_k,
    )
    better = 0
    for g, hyps in zip(greedy, beam):
        assert len(hyps) == 5
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 5
        assert hyps[0].score >= g.score - 1e-5
        better += hyps[0].score > g.score + 1e-5
    assert better > 0, "beam search should find something better than greedy somewhere"


# Vocabulary of the constructed case: PAD UNK BOS EOS A B.
A = 4
PROBS = [1e-30, 0.05, 1e-30, 0.3, 0.6, 0.05]


def test_length_penalty_changes_ranking(top_k) -> None:
    """Fixed p(A)=0.6, p(EOS)=0.3: A^n EOS has log-prob n*log(.6)+log(.3), more negative as n grows.

    Without a penalty the empty output wins; with a large alpha the longest allowed one
    (A^6, forced end at max_len=6) wins.
    """
    model = FixedDistModel(PROBS)
    batch = collate([[5, 6, 7]], None, [0])

    def lp_of(n: int) -> float:
        return n * math.log(0.6) + math.log(0.3)

    (plain,) = beam_search(
        model,
        batch.src,
        batch.src_lens,
        beam_size=3,
        length_penalty=0.0,
        max_len=6,
        max_len_ratio=10.0,
        nbest=3,
        top_k=top_k,
    )
    assert [h.tokens for h in plain] == [[], [A], [A, A]]
    assert [h.log_prob for h in plain] == pytest.approx([lp_of(0), lp_of(1), lp_of(2)], abs=1e-5)
    assert [h.score for h in plain] == pytest.approx([h.log_prob for h in plain])

    (pen,) = beam_search(
        model,
        batch.src,
        batch.src_lens,
        beam_size=3,
        length_penalty=3.0,
        max_len=6,
        max_len_ratio=10.0,
        nbest=3,
        top_k=top_k,
    )
    assert pen[0].tokens == [A] * 6
    assert pen[0].log_prob == pytest.approx(lp_of(6), abs=1e-5)
    assert pen[0].score == pytest.approx(lp_of(6) / ((5 + 7) / 6) ** 3.0, abs=1e-5)
    assert pen[0].attention.shape == (7, 4)
    torch.testing.assert_close(pen[0].attention, torch.full((7, 4), 0.25))


def test_output_length_bounded_by_ratio(top_k) -> None:
    model = RandomStepModel(eos_shift=-30.0)  # EOS never likely: every output runs to its limit
    batch = make_batch(LENGTHS)
    for max_len, ratio in [(50, 1.5), (5, 1.5), (50, 0.5)]:
        limit = [min(max_len, math.ceil(ratio * n)) for n in batch.src_lens.tolist()]
        greedy = greedy_search(model, batch.src, batch.src_lens, max_len=max_len, max_len_ratio=ratio, top_k=top_k)
        assert [len(h.tokens) for h in greedy] == limit
        beam = beam_search(
            model,
            batch.src,
            batch.src_lens,
            beam_size=3,
            length_penalty=0.0,
            max_len=max_len,
            max_len_ratio=ratio,
            nbest=3,
            top_k=top_k,
        )
        for hyps, cap in zip(beam, limit):
            assert len(hyps) == 3  # forced end: the best live beams are returned
            assert all(len(h.tokens) == cap for h in hyps)
            assert all(h.attention.shape[0] == cap + 1 for h in hyps)


def test_attention_follows_backpointers(top_k) -> None:
    model = PathModel()
    batch = make_batch([5, 11, 3, 8, 12, 2], vocab=9)
    beam = beam_search(
        model,
        batch.src,
        batch.src_lens,
        beam_size=4,
        length_penalty=0.5,
        max_len=12,
        max_len_ratio=3.0,
        nbest=4,
        top_k=top_k,
    )
    reordered = any((idx.diff() < 0).any() or len(set(idx.tolist())) < idx.numel() for idx in model.selects[1:])
    assert reordered, "the search never reordered beams: the test would prove nothing"
    for hyps, n in zip(beam, batch.src_lens.tolist()):
        assert len({tuple(h.tokens) for h in hyps}) == len(hyps) == 4
        for h in hyps:
            torch.testing.assert_close(h.attention, model.expected_attention(h.tokens, n))


def test_decode_dispatch_and_chunking(top_k) -> None:
    model = RandomStepModel()
    model.train()
    batch = make_batch(LENGTHS)
    greedy = greedy_search(model, batch.src, batch.src_lens, max_len=50, max_len_ratio=2.0, top_k=top_k)
    assert model.training, "the caller's train mode is restored"
    cfg = DecodeConfig(strategy=Strategy.greedy, max_len=50, max_len_ratio=2.0, batch_size=3)
    forms = [decode(model, batch, cfg, top_k=top_k), decode(model, batch.src, batch.src_lens, cfg, top_k=top_k)]
    for out in forms + [decode(model, batch.src, cfg=cfg, top_k=top_k)]:  # lengths counted from the padding
        assert [h.tokens for h in out] == [h.tokens for h in greedy]
    beam = beam_search(
        model, batch.src, batch.src_lens, beam_size=3, length_penalty=0.6, max_len=50, max_len_ratio=2.0, top_k=top_k
    )
    cfg = DecodeConfig(strategy=Strategy.beam, beam_size=3, length_penalty=0.6, max_len=50, max_len_ratio=2.0)
    assert [h.tokens for h in decode(model, batch, cfg, top_k=top_k)] == [hs[0].tokens for hs in beam]
    with pytest.raises(ValueError):
        beam_search(
            model,
            batch.src,
            batch.src_lens,
            beam_size=2,
            length_penalty=0.0,
            max_len=5,
            max_len_ratio=1.0,
            nbest=3,
            top_k=top_k,
        )


# ----------------------------------------------------------------------------- real model


def tiny_model_config(attention: bool = True):
    from pipeline.config import (
        AttentionConfig,
        ContextType,
        DecoderConfig,
        EncoderConfig,
        ModelConfig,
    )

    return ModelConfig(
        context=ContextType.attention if attention else ContextType.fixed,
        emb_dim=32,
        dropout=0.0,
        encoder=EncoderConfig(hidden_dim=32, layers=1, dropout=0.0),
        decoder=DecoderConfig(hidden_dim=64, readout_dim=32),
        attention=AttentionConfig(dim=32),
    )


def real_model(cfg, vocab: int, impl: str):
    """(model, its search's top-k step), as the commands build them for ``model.impl=impl``."""
    from pipeline.model.seq2seq import build_model

    torch.manual_seed(0)
    implementations = accelerate(build_model(cfg, vocab, vocab, PAD_ID), impl, torch.device("cpu"))
    fast = {name for name in implementations.names().values() if name != "reference"}
    assert bool(fast) == (impl == "auto"), implementations.summary()
    return implementations.model, implementations.top_log_probs


@pytest.mark.parametrize("attention", [True, False])
def test_real_model_paths_match_teacher_forcing(attention: bool, impl: str) -> None:
    """Untrained real Seq2Seq: beam 1 == greedy; every n-best hypothesis's log-prob and
    attention equal what teacher-forced ``model.forward`` gives for its own tokens (on the
    fast path, the searches' steps are the reference's and teacher forcing is the fast recurrence)."""
    model, top_k = real_model(tiny_model_config(attention), 17, impl)
    model.eval()
    batch = make_batch(LENGTHS)
    greedy = greedy_search(model, batch.src, batch.src_lens, max_len=30, max_len_ratio=2.0, top_k=top_k)
    beam1 = beam_search(
        model, batch.src, batch.src_lens, beam_size=1, length_penalty=0.0, max_len=30, max_len_ratio=2.0, top_k=top_k
    )
    assert [g.tokens for g in greedy] == [b[0].tokens for b in beam1]
    beam = beam_search(
        model,
        batch.src,
        batch.src_lens,
        beam_size=4,
        length_penalty=1.0,
        max_len=30,
        max_len_ratio=2.0,
        nbest=4,
        top_k=top_k,
    )
    hyps = [h for hs in beam for h in hs]
    rows = [i for i, hs in enumerate(beam) for _ in hs]
    srcs = [batch.src[i, : int(batch.src_lens[i]) - 1].tolist() for i in rows]
    tf = collate(srcs, [h.tokens for h in hyps], rows)
    with torch.no_grad():
        logits, attn = model(tf.src, tf.src_lens, tf.tgt_in)
    lp = F.log_softmax(logits.float(), -1).gather(2, tf.tgt_out.unsqueeze(2)).squeeze(2)
    lp = lp.masked_fill(tf.tgt_out == PAD_ID, 0.0).sum(1)
    for j, h in enumerate(hyps):
        assert h.log_prob == pytest.approx(float(lp[j]), abs=1e-4)
        n = int(tf.src_lens[j])
        if attention:
            torch.testing.assert_close(h.attention, attn[j, : len(h.tokens) + 1, :n], atol=1e-5, rtol=1e-4)
        else:
            assert h.attention is None


def test_real_model_learns_copy_task(impl: str) -> None:
    """Train a tiny RNNsearch to copy; greedy and beam-3 must then reproduce held-out inputs exactly.

    Inputs are distinct symbols; training stops once 10 consecutive batch losses are tiny
    (~250 steps, ~3 s; tests/copytask.py).
    """
    vocab = 14
    model, top_k = real_model(tiny_model_config(), vocab, impl)
    g = torch.Generator().manual_seed(0)
    train_copy(model, vocab, g)
    seqs = copy_inputs(48, vocab, g)
    b = collate(seqs, None, list(range(48)))
    greedy = greedy_search(model, b.src, b.src_lens, max_len=50, max_len_ratio=2.0, top_k=top_k)
    beam = beam_search(
        model, b.src, b.src_lens, beam_size=3, length_penalty=0.6, max_len=50, max_len_ratio=2.0, top_k=top_k
    )
    assert model.training  # restored after decoding
    assert [h.tokens for h in greedy] == seqs
    assert [hs[0].tokens for hs in beam] == seqs
    cfg = DecodeConfig(strategy=Strategy.beam, beam_size=3, max_len=50, max_len_ratio=2.0)
    assert [h.tokens for h in decode(model, b, cfg, top_k=top_k)] == seqs
    # Copying aligns output i with source i (the EOS row with the source EOS): catches rows off by one.
    diag = [float((h.attention.argmax(-1) == torch.arange(len(h.tokens) + 1)).float().mean()) for h in greedy]
    assert sum(diag) / len(diag) > 0.6  # 0.90 when written
