"""The matrix products of one training step, by shape, as ``model.impl=auto`` runs them on the CPU.

Why: MFU against a 2048^3 product's rate asks the model's products to run as fast as one large
square GEMM, which a recurrence of ~190-row steps cannot.  scripts/bench.py also times every
product listed here alone, at its own shape, and takes Σ FLOPs / Σ time as the peak *at the
model's GEMM shapes*: what a step could reach if nothing but its matrix products cost time.

A shape (m, k, n) is one product [m, k] x [k, n] (2mkn FLOPs).  Each forward product (m, k, n)
of a layer over a batch has two backward ones: the input's gradient (m, n, k) and the weight's
(n, m, k) (``∂Wᵀ = xᵀ ∂y``, as :func:`pipeline.fast.mixed_gemm.weight_grad` computes it).
Listed for the GRU models of pipeline/fast (RNNsearch with the additive score and Bahdanau's
placement, and the fixed-context baseline), with B sentences, source lengths s_b, target
lengths t_b (with EOS), S = max s_b, T = max t_b:

* encoder (packed, pipeline/fast/encoder.py), per layer and direction: W_ih x over the N = Σ s_b
  real positions, and W_hh s_{t-1} for the b_t sentences still going at step t (the backward
  skips t = 0: the encoder starts from zeros); W_hh's gradient is one product over all N rows;
* s_0 = tanh(W_s h̄) over B rows; the additive score's keys U_a h over the B·S padded positions;
* decoder (one recurrence over the padded [T, B], pipeline/fast/decoder.py): W_ie E y for all
  steps at once; per step [W_hh; W_a] s_{i-1} and W_ic c_i (forward, and their transposes in
  the backward), the weight gradients one product over all T·B rows; the annotations' gradient
  Σ_i α_iᵀ ∂c_i as B products [S, T] x [T, C];
* the deep output over T·B rows, then the output layer and its loss over the real target
  positions in chunks of ``LINEAR_CHUNK_ROWS`` (pipeline/fast/loss.py): logits, ∂x and ∂W.

Left out, as in :mod:`pipeline.runtime.flops`: the additive score itself (a fused kernel, not a
GEMM) and all element-wise work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pipeline.config import AttentionPlacement, AttentionScore, ContextType, InitState, ModelConfig, Readout, RnnType

Shape = tuple[int, int, int]
LINEAR_CHUNK_ROWS = 256  # pipeline/fast/loss.py's chunk of the fused output layer


def covered(cfg: ModelConfig) -> str | None:
    """None where :func:`training_gemms` lists this model's products, else why not."""
    if RnnType(cfg.encoder.rnn) is not RnnType.gru:
        return "a GRU encoder only (the LSTM trains on the reference path)"
    if ContextType(cfg.context) is ContextType.attention and (
        AttentionScore(cfg.attention.score) is not AttentionScore.additive
        or AttentionPlacement(cfg.attention.placement) is not AttentionPlacement.bahdanau
    ):
        return "the additive score with Bahdanau's placement only"
    return None


def _layer(shapes: Counter, m: int, k: int, n: int, count: int = 1) -> None:
    """A linear layer over m rows, k -> n: its forward product and the two of its backward."""
    shapes[(m, k, n)] += count
    shapes[(m, n, k)] += count
    shapes[(n, m, k)] += count


def training_gemms(cfg: ModelConfig, tgt_vocab: int, src_lens: Sequence[int], tgt_lens: Sequence[int]) -> Counter:
    """Counter of (m, k, n) -> how many times one teacher-forced step (forward and backward) multiplies that shape."""
    reason = covered(cfg)
    if reason is not None:
        raise ValueError(f"training_gemms: {reason}")
    e, he, hd = cfg.emb_dim, cfg.encoder.hidden_dim, cfg.decoder.hidden_dim
    c, a, r = 2 * he, cfg.attention.dim, cfg.decoder.readout_dim
    pieces = 2 if Readout(cfg.decoder.readout) is Readout.maxout else 1
    attention = ContextType(cfg.context) is ContextType.attention
    b, s_max, t_max, n_src = len(src_lens), max(src_lens), max(tgt_lens), sum(src_lens)
    shapes: Counter = Counter()

    still_going = [sum(1 for s in src_lens if s > t) for t in range(s_max)]
    for layer in range(cfg.encoder.layers):
        for _direction in range(2):
            _layer(shapes, n_src, e if layer == 0 else c, 3 * he)
            for t, rows in enumerate(still_going):
                shapes[(rows, he, 3 * he)] += 1
                if t > 0:
                    shapes[(rows, 3 * he, he)] += 1
            shapes[(3 * he, n_src, he)] += 1

    init_in = he if InitState(cfg.decoder.init_state) is InitState.first_backward else c
    _layer(shapes, b, init_in, hd)
    rows = t_max * b
    _layer(shapes, rows, e, 3 * hd)  # W_ie E y_{i-1}
    query = 3 * hd + (a if attention else 0)  # [W_hh ; W_a] s_{i-1}: one product per step
    shapes[(b, hd, query)] += t_max
    shapes[(b, query, hd)] += t_max
    shapes[(query, rows, hd)] += 1
    if attention:
        _layer(shapes, b * s_max, c, a)  # U_a h
        shapes[(b, c, 3 * hd)] += t_max  # W_ic c_i
        shapes[(b, 3 * hd, c)] += t_max
        shapes[(3 * hd, rows, c)] += 1
        shapes[(s_max, t_max, c)] += b  # ∂h = Σ_i α_iᵀ ∂c_i
        _layer(shapes, rows, hd + e + c, pieces * r)
    else:
        _layer(shapes, b, c, 3 * hd)  # W_ic c, once
        _layer(shapes, rows, hd + e, pieces * r)
        _layer(shapes, b, c, pieces * r)  # C_o c, once

    n_tgt = sum(tgt_lens)
    full, last = divmod(n_tgt, LINEAR_CHUNK_ROWS)
    for chunk, count in ((LINEAR_CHUNK_ROWS, full), (last, 1 if last else 0)):
        if count:
            shapes[(chunk, r, tgt_vocab)] += count
            shapes[(chunk, tgt_vocab, r)] += count
            shapes[(tgt_vocab, chunk, r)] += count
    return shapes


def gemm_flops(shapes: Counter) -> float:
    """Σ 2mkn over the products of ``shapes``."""
    return float(sum(2 * m * k * n * count for (m, k, n), count in shapes.items()))
