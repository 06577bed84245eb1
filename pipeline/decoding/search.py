"""Batched greedy and beam search over a step-wise seq2seq decoder.

Why batched: one ``model.step`` call per time step for the whole batch (and, for
beam search, for all ``B * K`` beams at once) keeps the matrix products large; a
Python loop over sentences would leave the hardware idle.  Sentences that are done
are dropped from the batch (``state.index_select``) so that they cost nothing more.

Conventions shared by both searches, so that ``beam_size=1`` reproduces greedy:

* Every output ends with EOS.  A sentence may produce at most
  ``min(max_len, ceil(max_len_ratio * src_len))`` tokens before EOS (``src_len``
  counts the source EOS, as :class:`~pipeline.data.batching.Batch` does); at that step
  EOS is forced, and its log-probability is part of the score (a "forced end").
* PAD and BOS are never produced: they are not outputs of the translation task.
* Log-probabilities are computed in fp32 whatever the model's compute dtype.
* Ties between equal candidates go to the lower token id (``argmax`` semantics).

The model interface (see ``pipeline/model/seq2seq.py``): ``encode(src, src_lens)``,
``start(enc) -> state``, ``step(prev_tokens, state) -> (logits, state, attn|None)``,
``state.index_select(rows)`` and ``has_attention``.

Every search takes ``top_k``, the function that picks each row's best next tokens: by default
:func:`top_log_probs` below; the model's :class:`~pipeline.fast.registry.Implementations` may
hand a faster twin of it (``model.impl``), which gives the same tokens and values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from pipeline.config import DecodeConfig, Strategy, to_object
from pipeline.data.batching import Batch, collate
from pipeline.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    """One decoded output.

    tokens     target piece ids, without BOS and EOS
    score      the ranking score: ``log_prob / lp(len(tokens) + 1)`` (GNMT length
               penalty; equal to ``log_prob`` when the penalty is off and for greedy)
    log_prob   raw sum of the log-probabilities of the tokens and of the final EOS
    attention  [len(tokens) + 1, src_len] float32 on CPU, one row per produced token
               (the last row is the EOS's), columns = the real source positions
               (source EOS included, padding excluded); ``None`` for models
               without attention
    """

    tokens: list[int]
    score: float
    log_prob: float
    attention: torch.Tensor | None = None


class DecoderState(Protocol):
    def index_select(self, idx: torch.Tensor, same_source: bool = False) -> DecoderState:
        """Rows ``idx`` of the state.  ``same_source=True`` promises that row j and row idx[j]
        translate the same sentence (a beam reorder within each sentence's group, no group
        dropped), so source-side tensors (encoder output, attention keys) may stay as they are."""
        ...


class StepModel(Protocol):
    """What the searches need from a model (``pipeline.model.seq2seq.Seq2Seq`` fits)."""

    has_attention: bool

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> Any: ...

    def start(self, enc: Any) -> DecoderState: ...

    def step(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]: ...


# ----------------------------------------------------------------------------- helpers


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + |Y|) / 6) ** alpha``; ``alpha = 0`` gives exactly 1.

    ``|Y|`` counts the final EOS, since its log-probability is part of the score.
    """
    return 1.0 if alpha == 0 else ((5.0 + length) / 6.0) ** alpha


def max_output_lengths(src_lens: torch.Tensor, max_len: int, max_len_ratio: float) -> torch.Tensor:
    """Per-sentence cap on produced tokens (EOS excluded): ``min(max_len, ceil(ratio * src_len))``.

    Bounding by the source stops an untrained or degenerate model from emitting
    ``max_len`` tokens for every short sentence.  The tiny epsilon keeps float noise
    (``1.1 * 10 = 11.000000000000002``) from adding a token.
    """
    by_ratio = torch.ceil(src_lens.double() * max(float(max_len_ratio), 0.0) - 1e-9).long()
    return by_ratio.clamp(min=0, max=max(int(max_len), 0))


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Dropout must be off while decoding; the caller's train/eval mode is restored."""
    was_training = bool(getattr(model, "training", False))
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train(True)


def _log_probs(logits: torch.Tensor, forced_end: torch.Tensor, banned: Sequence[int], eos: int) -> torch.Tensor:
    """fp32 log-softmax; ``banned`` tokens never produced; rows in ``forced_end`` may only produce ``eos``."""
    lprobs = F.log_softmax(logits.float(), dim=-1)  # a fresh tensor: masked in place
    lprobs[:, list(banned)] = NEG_INF
    ended = forced_end.nonzero().squeeze(1)
    if ended.numel():
        end = lprobs[ended, eos]
        lprobs[ended] = NEG_INF
        lprobs[ended, eos] = end
    return lprobs


def top_log_probs(
    logits: torch.Tensor, forced_end: torch.Tensor, k: int, banned: Sequence[int], eos: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best next tokens of each row of ``logits`` [R, V]: (log-probs [R, k] fp32, ids [R, k]),
    best first, ties to the lower id (what ``argmax`` picks for ``k = 1``); ``banned`` tokens (PAD,
    BOS) are never picked and rows in ``forced_end`` [R] bool pick only ``eos``."""
    lprobs = _log_probs(logits, forced_end, banned, eos)
    if k == 1:
        best, tok = lprobs.max(dim=-1)  # first max on ties
        return best.unsqueeze(1), tok.unsqueeze(1)
    return _stable_desc(*lprobs.topk(k, dim=-1))


TopK = Callable[[torch.Tensor, torch.Tensor, int, Sequence[int], int], tuple[torch.Tensor, torch.Tensor]]
BANNED = (PAD_ID, BOS_ID)  # not outputs of the translation task


def _prepare(model: Any, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    device = _model_device(model)
    src = src.to(device=device, dtype=torch.long)
    src_lens = src_lens.to(device=device, dtype=torch.long)
    if src.dim() != 2 or src_lens.shape != (src.size(0),):
        raise ValueError(f"expected src [B, S] and src_lens [B], got {tuple(src.shape)} and {tuple(src_lens.shape)}")
    return src, src_lens


def _attention_slice(attn: torch.Tensor | None, rows: int, src_len: int) -> torch.Tensor | None:
    # clone() outside inference mode: each Hypothesis owns a small ordinary tensor (usable
    # with autograd / in-place ops), not an inference-mode view of the whole batch.
    return None if attn is None else attn[:rows, :src_len].clone()


# ----------------------------------------------------------------------------- greedy


def greedy_search(
    model: StepModel,
    src: torch.Tensor,
    src_lens: torch.Tensor,
    max_len: int,
    max_len_ratio: float,
    top_k: TopK | None = None,
) -> list[Hypothesis]:
    """Greedy decoding of a batch: one ``model.step`` per time step for all sentences.

    A sentence stops growing when it produces EOS and is removed from the batch;
    the loop ends when all have.  ``score == log_prob`` (greedy has no length penalty).
    """
    n = src.size(0)
    if n == 0:
        return []
    with _eval_mode(model), torch.inference_mode():
        tokens, log_prob, attn, lengths, src_lens_cpu = _greedy(
            model, src, src_lens, max_len, max_len_ratio, top_k or top_log_probs
        )
    out: list[Hypothesis] = []
    for i in range(n):
        length, lp = int(lengths[i]), float(log_prob[i])
        out.append(
            Hypothesis(
                tokens[i, :length].tolist(),
                lp,
                lp,
                _attention_slice(None if attn is None else attn[i], length + 1, int(src_lens_cpu[i])),
            )
        )
    return out


def _greedy(
    model: StepModel, src: torch.Tensor, src_lens: torch.Tensor, max_len: int, max_len_ratio: float, top_k: TopK
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    src, src_lens = _prepare(model, src, src_lens)
    device, n, src_width = src.device, src.size(0), src.size(1)
    limit = max_output_lengths(src_lens, max_len, max_len_ratio)
    steps = int(limit.max()) + 1  # + the (possibly forced) EOS step

    state = model.start(model.encode(src, src_lens))
    alive = torch.arange(n, device=device)  # batch index of each state row
    prev = torch.full((n,), BOS_ID, dtype=torch.long, device=device)
    tokens = torch.full((n, steps), PAD_ID, dtype=torch.long, device=device)
    log_prob = torch.zeros(n, dtype=torch.float32, device=device)
    attn_out: torch.Tensor | None = None
    for t in range(steps):
        logits, state, attn = model.step(prev, state)
        best, tok = (column[:, 0] for column in top_k(logits, limit[alive] <= t, 1, BANNED, EOS_ID))
        tokens[alive, t] = tok
        log_prob[alive] = log_prob[alive] + best
        if attn is not None:
            if attn_out is None:
                attn_out = torch.zeros(n, steps, src_width, dtype=torch.float32, device=device)
            attn_out[alive, t] = attn.float()
        going = tok != EOS_ID
        if not bool(going.all()):
            keep = going.nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            alive, tok, state = alive[keep], tok[keep], state.index_select(keep)
        prev = tok
    lengths = (tokens == EOS_ID).int().argmax(dim=1)  # every row has an EOS (forced at the limit)
    return tokens.cpu(), log_prob.cpu(), None if attn_out is None else attn_out.cpu(), lengths.cpu(), src_lens.cpu()


# ----------------------------------------------------------------------------- beam


@dataclass
class _Finished:
    score: float
    log_prob: float
    step: int  # the step that produced EOS; == number of tokens before EOS
    row: int  # the beam row (in that step's row numbering) that produced EOS


def beam_search(
    model: StepModel,
    src: torch.Tensor,
    src_lens: torch.Tensor,
    beam_size: int,
    length_penalty: float,
    max_len: int,
    max_len_ratio: float,
    nbest: int = 1,
    top_k: TopK | None = None,
) -> list[list[Hypothesis]]:
    """Beam search over a batch; returns the ``nbest`` best hypotheses per sentence, best first.

    All ``B * K`` beams advance in one ``model.step``.  Live beams are ranked by raw
    log-probability; a candidate ending in EOS among the top ``K`` is set aside as a
    finished hypothesis, ranked by ``log_prob / lp`` (GNMT, ``alpha=length_penalty``),
    and its beam slot is refilled by the next-best non-EOS candidate, so that ``K``
    beams stay live.  A sentence is done when its ``K``-th best finished hypothesis
    scores at least the best any live beam could still reach (its log-prob can only
    fall; the most favourable final length is taken for ``lp``), or at its length
    limit, where EOS is forced on every live beam.  Attention is recovered at the end
    by following each hypothesis's back-pointers, so each carries its own path's rows.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and beam_size={beam_size}, got {nbest}")
    n = src.size(0)
    if n == 0:
        return []
    with _eval_mode(model), torch.inference_mode():
        picked, tokens, attn, src_lens_cpu = _beam(
            model,
            src,
            src_lens,
            beam_size,
            float(length_penalty),
            max_len,
            max_len_ratio,
            nbest,
            top_k or top_log_probs,
        )
    out: list[list[Hypothesis]] = []
    h = 0
    for i in range(n):
        hyps: list[Hypothesis] = []
        for fin in picked[i]:
            hyps.append(
                Hypothesis(
                    tokens[h, : fin.step].tolist(),
                    fin.score,
                    fin.log_prob,
                    _attention_slice(None if attn is None else attn[h], fin.step + 1, int(src_lens_cpu[i])),
                )
            )
            h += 1
        out.append(hyps)
    return out


def _stable_desc(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort the last dim by value descending, ties by id ascending (``topk`` leaves ties unordered).

    This is what makes ``beam_size=1`` pick exactly ``argmax``'s token.
    """
    ids, order = ids.sort(dim=-1)
    values = values.gather(-1, order)
    values, order = values.sort(dim=-1, descending=True, stable=True)
    return values, ids.gather(-1, order)


def _beam(
    model: StepModel,
    src: torch.Tensor,
    src_lens: torch.Tensor,
    k: int,
    alpha: float,
    max_len: int,
    max_len_ratio: float,
    nbest: int,
    top_k: TopK,
) -> tuple[list[list[_Finished]], torch.Tensor, torch.Tensor | None, torch.Tensor]:
    src, src_lens = _prepare(model, src, src_lens)
    device, n = src.device, src.size(0)
    limit = max_output_lengths(src_lens, max_len, max_len_ratio)
    steps = int(limit.max()) + 1
    # lp_table[l] = lp(l) for every final length l (tokens + EOS) that can occur.
    lp_list = [gnmt_length_penalty(length, alpha) for length in range(steps + 2)]
    lp_table = torch.tensor(lp_list, dtype=torch.float32, device=device)

    state = model.start(model.encode(src, src_lens))
    state = state.index_select(torch.arange(n, device=device).repeat_interleave(k))
    alive = torch.arange(n, device=device)  # sentence of each group of k rows
    scores = torch.full((n, k), NEG_INF, device=device)
    scores[:, 0] = 0.0  # at step 0 the k rows are copies: expand only the first
    prev = torch.full((n * k,), BOS_ID, dtype=torch.long, device=device)
    fin_best = torch.full((n, k), NEG_INF, device=device)  # k best finished scores per sentence
    finished: list[list[_Finished]] = [[] for _ in range(n)]
    # History for back-tracking.  Rows of step t are numbered group * k + beam over the
    # sentences alive at step t.  parents[t][j] / toks[t][j]: the step-t row that row j of
    # step t+1 extends, and the token it appended.  attns[t][r]: attention of step-t row r.
    parents: list[torch.Tensor] = []
    toks: list[torch.Tensor] = []
    attns: list[torch.Tensor | None] = []

    for t in range(steps):
        logits, state, attn = model.step(prev, state)
        na, vocab = alive.numel(), logits.size(-1)
        attns.append(None if attn is None else attn.float())
        # Top-2k over k*V per sentence, in two exact stages: the global top-2k can only
        # contain each beam's own top-2k tokens, so sort 2k*k candidates, not k*V.
        per_beam = min(2 * k, vocab)
        top_lp, top_tok = top_k(logits, (limit[alive] <= t).repeat_interleave(k), per_beam, BANNED, EOS_ID)
        top_lp, top_tok = top_lp.view(na, k, per_beam), top_tok.view(na, k, per_beam)
        cand = (scores.unsqueeze(-1) + top_lp).view(na, k * per_beam)
        cand, order = cand.sort(dim=-1, descending=True, stable=True)
        width = min(2 * k, k * per_beam)  # <= k EOS among them, so >= k live remain
        cand, order = cand[:, :width], order[:, :width]
        cand_tok = top_tok.view(na, k * per_beam).gather(1, order)
        cand_beam = order // per_beam
        is_eos = cand_tok == EOS_ID

        # EOS candidates ranked within the top k become finished hypotheses.
        ends = is_eos[:, :k] & torch.isfinite(cand[:, :k])
        end_scores = cand[:, :k] / lp_list[t + 1]
        fin_now = torch.cat([fin_best[alive], end_scores.masked_fill(~ends, NEG_INF)], dim=1).topk(k, dim=1).values
        fin_best[alive] = fin_now
        if bool(ends.any()):
            grp, pos = ends.nonzero(as_tuple=True)
            sents = alive[grp].tolist()
            rows = (grp * k + cand_beam[grp, pos]).tolist()
            for s, sc, lp, row in zip(sents, end_scores[grp, pos].tolist(), cand[grp, pos].tolist(), rows):
                finished[s].append(_Finished(sc, lp, t, row))

        # The k best non-EOS candidates stay live (EOS ones sort last by this key).
        key = is_eos.long() * width + torch.arange(width, device=device)
        live_pos = key.topk(k, dim=1, largest=False).indices.sort(dim=1).values
        live_scores = cand.gather(1, live_pos)
        live_tok = cand_tok.gather(1, live_pos)
        live_scores = live_scores.masked_fill(live_tok == EOS_ID, NEG_INF)  # tiny vocabularies only
        live_beam = cand_beam.gather(1, live_pos)

        # Done: k finished that no live beam can beat (log-probs only fall, so the best a
        # live beam can reach is its log-prob over the largest lp of its possible lengths),
        # or the length limit was reached (EOS was forced on every beam).
        best_lp = torch.maximum(lp_table[t + 2].expand(na), lp_table[(limit[alive] + 1).clamp(max=steps + 1)])
        reachable = live_scores[:, 0] / best_lp
        done = (fin_now[:, k - 1] >= reachable) | (limit[alive] <= t)
        keep = (~done).nonzero().squeeze(1)
        if keep.numel() == 0:
            break
        parent = (keep.unsqueeze(1) * k + live_beam[keep]).reshape(-1)
        prev = live_tok[keep].reshape(-1)
        parents.append(parent)
        toks.append(prev)
        state = state.index_select(parent, same_source=keep.numel() == na)
        scores, alive = live_scores[keep], alive[keep]

    picked = [_pick(finished[i], nbest) for i in range(n)]
    tokens, attn = _backtrack([f for p in picked for f in p], parents, toks, attns, src.size(1), device)
    return picked, tokens, attn, src_lens.cpu()


def _pick(finished: list[_Finished], nbest: int) -> list[_Finished]:
    """Best ``nbest`` by score; on ties the earlier-finished (shorter) one first."""
    if not finished:  # only if every candidate was -inf: keep the API's one-per-sentence promise
        return [_Finished(NEG_INF, NEG_INF, 0, -1)]
    return sorted(finished, key=lambda f: -f.score)[:nbest]


def _backtrack(
    hyps: list[_Finished],
    parents: list[torch.Tensor],
    toks: list[torch.Tensor],
    attns: list[torch.Tensor | None],
    src_width: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Tokens [H, T] and attention [H, T+1, S] of each hypothesis, from its own path.

    Walks all hypotheses back at once, one vectorised step per time step: a pointer
    per hypothesis starts at the row that produced its EOS and follows ``parents``.
    """
    n_hyp = len(hyps)
    last = max(f.step for f in hyps)
    end_step = torch.tensor([f.step for f in hyps], device=device)
    ptr = torch.tensor([max(f.row, 0) for f in hyps], device=device)
    tokens = torch.full((n_hyp, max(last, 1)), PAD_ID, dtype=torch.long, device=device)
    with_attn = attns[0] is not None and all(f.row >= 0 for f in hyps)
    attn = torch.zeros(n_hyp, last + 1, src_width, device=device) if with_attn else None
    for t in range(last, -1, -1):
        # Pointers of hypotheses that end after step t are rows of step t+1: move them to step t.
        later = (end_step > t).nonzero().squeeze(1)
        if later.numel():
            row = ptr[later]
            tokens[later, t] = toks[t][row]
            ptr[later] = parents[t][row]
        if attn is not None:
            here = (end_step >= t).nonzero().squeeze(1)
            attn[here, t] = attns[t][ptr[here]]  # type: ignore[index]
    return tokens.cpu(), None if attn is None else attn.cpu()


# ----------------------------------------------------------------------------- dispatch


def decode(
    model: StepModel,
    batch_or_src: Batch | torch.Tensor,
    src_lens: torch.Tensor | DecodeConfig | Any = None,
    cfg: DecodeConfig | Any = None,
    top_k: TopK | None = None,
) -> list[Hypothesis]:
    """Best hypothesis per sentence with the strategy of ``cfg`` (a DecodeConfig or its node).

    Accepted forms: ``decode(model, batch, cfg)``, ``decode(model, src, src_lens, cfg)``
    and ``decode(model, src, cfg=cfg)`` (lengths then counted from the non-PAD
    positions, sources never containing PAD).  Sentences are decoded in chunks of
    ``cfg.batch_size`` so that a large request cannot exhaust memory.
    """
    if cfg is None and src_lens is not None and not isinstance(src_lens, torch.Tensor):
        src_lens, cfg = None, src_lens
    cfg = DecodeConfig() if cfg is None else to_object(cfg, DecodeConfig)
    if isinstance(batch_or_src, Batch):
        src, lens = batch_or_src.src, batch_or_src.src_lens
    else:
        src = batch_or_src
        lens = src_lens if src_lens is not None else (src != PAD_ID).sum(dim=1)
    strategy = Strategy(cfg.strategy)
    chunk = max(int(cfg.batch_size), 1)
    out: list[Hypothesis] = []
    for start in range(0, src.size(0), chunk):
        part_lens = lens[start : start + chunk]
        width = int(part_lens.max())
        part = src[start : start + chunk, :width]
        if strategy is Strategy.greedy:
            out.extend(greedy_search(model, part, part_lens, cfg.max_len, cfg.max_len_ratio, top_k))
        else:
            nbest = beam_search(
                model, part, part_lens, cfg.beam_size, cfg.length_penalty, cfg.max_len, cfg.max_len_ratio, 1, top_k
            )
            out.extend(hyps[0] for hyps in nbest)
    return out


__all__ = [
    "Hypothesis",
    "beam_search",
    "decode",
    "decode_sequences",
    "gnmt_length_penalty",
    "greedy_search",
    "max_output_lengths",
    "top_log_probs",
]


def decode_sequences(
    model: StepModel, src_seqs: list[list[int]], cfg: DecodeConfig, nbest: bool = False, top_k: TopK | None = None
) -> list[Hypothesis] | list[list[Hypothesis]]:
    """Decode piece-id sequences (without EOS) in input order, batching sentences of similar length.

    Sorting by length before cutting batches of ``cfg.batch_size`` keeps padding, and so
    wasted computation, small; results are put back in the caller's order.  With
    ``nbest`` (beam only) each entry is the list of ``cfg.nbest`` hypotheses.
    """
    order = sorted(range(len(src_seqs)), key=lambda i: len(src_seqs[i]))
    out: list[Any] = [None] * len(src_seqs)
    chunk = max(int(cfg.batch_size), 1)
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        batch = collate([src_seqs[i] for i in idx], None, idx)
        if Strategy(cfg.strategy) is Strategy.beam:
            hyps = beam_search(
                model,
                batch.src,
                batch.src_lens,
                cfg.beam_size,
                cfg.length_penalty,
                cfg.max_len,
                cfg.max_len_ratio,
                nbest=cfg.nbest if nbest else 1,
                top_k=top_k,
            )
            results: list[Any] = hyps if nbest else [h[0] for h in hyps]
        else:
            greedy = greedy_search(model, batch.src, batch.src_lens, cfg.max_len, cfg.max_len_ratio, top_k)
            results = [[h] for h in greedy] if nbest else greedy
        for i, r in zip(idx, results):
            out[i] = r
    return out
