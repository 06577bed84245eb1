"""Ensemble decoding: the members' mean log-probabilities per step, their mean attention, in both searches."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from tinydata import tiny_model

from pipeline.config import ContextType
from pipeline.data.batching import collate
from pipeline.data.tokenizer import PAD_ID
from pipeline.decoding.ensemble import Ensemble
from pipeline.decoding.search import beam_search, greedy_search
from pipeline.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
VOCAB = 40


def _model(seed: int, context: ContextType = ContextType.attention) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_model(context), VOCAB, VOCAB, PAD_ID).eval()


def _batch():
    g = torch.Generator().manual_seed(3)
    seqs = [(torch.randint(4, VOCAB, (n,), generator=g)).tolist() for n in (5, 3, 7, 4)]
    return collate(seqs, seqs, list(range(len(seqs))))


def test_an_ensemble_of_one_model_twice_decodes_as_that_model():
    model, b = _model(0), _batch()
    twice = Ensemble([model, copy.deepcopy(model)])
    for alone, both in zip(
        greedy_search(model, b.src, b.src_lens, 12, 2.0), greedy_search(twice, b.src, b.src_lens, 12, 2.0)
    ):
        assert alone.tokens == both.tokens
        assert alone.log_prob == pytest.approx(both.log_prob, abs=1e-5)
        assert torch.allclose(alone.attention, both.attention, atol=1e-6)
    beams = beam_search(model, b.src, b.src_lens, 3, 0.6, 12, 2.0, nbest=3)
    ens_beams = beam_search(twice, b.src, b.src_lens, 3, 0.6, 12, 2.0, nbest=3)
    assert [[h.tokens for h in s] for s in beams] == [[h.tokens for h in s] for s in ens_beams]


def test_each_step_is_the_renormalised_mean_of_the_members_log_probs_and_attention():
    a, c, b = _model(0), _model(1), _batch()
    ens = Ensemble([a, c])
    with torch.no_grad():
        state = ens.start(ens.encode(b.src, b.src_lens))
        prev = b.tgt_in[:, 0]
        got, _, attn = ens.step(prev, state)
        la, _, wa = a.step(prev, a.start(a.encode(b.src, b.src_lens)))
        lc, _, wc = c.step(prev, c.start(c.encode(b.src, b.src_lens)))
    mean = (F.log_softmax(la, -1) + F.log_softmax(lc, -1)) / 2
    assert torch.allclose(got, mean, atol=1e-6)
    assert torch.allclose(attn, (wa + wc) / 2, atol=1e-6)
    # what the searches make of it: a distribution again (log-linear combination, renormalised)
    assert torch.allclose(F.log_softmax(got, -1).exp().sum(-1), torch.ones(len(prev)), atol=1e-5)


def test_a_baseline_member_votes_on_tokens_and_the_attention_comes_from_the_others():
    attn_model, baseline, b = _model(0), _model(1, ContextType.fixed), _batch()
    ens = Ensemble([attn_model, baseline])
    assert ens.has_attention and not Ensemble([baseline, copy.deepcopy(baseline)]).has_attention
    hyps = greedy_search(ens, b.src, b.src_lens, 12, 2.0)
    for h, n in zip(hyps, b.src_lens.tolist()):
        assert h.attention.shape == (len(h.tokens) + 1, n)
        assert torch.allclose(h.attention.sum(-1), torch.ones(len(h.tokens) + 1), atol=1e-5)
    with torch.no_grad():  # forced decoding (alignments): the attention member's own weights, unchanged
        _, forced = ens(b.src, b.src_lens, b.tgt_in)
        _, alone = attn_model(b.src, b.src_lens, b.tgt_in)
    assert torch.allclose(forced, alone)
