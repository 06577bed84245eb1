"""The hand-written recurrences (pipeline/fast/recurrence.py) against float64 autograd.

:func:`gru_recurrence` (the decoder, teacher-forced, with the additive or a multiplicative
score or a fixed context) and :func:`packed_gru_recurrence` (one encoder direction over packed
sequences) each run with the C++ kernels (what the CPU runs) and with ``kernels=None`` (the torch
ops that CUDA, or a machine without a compiler, runs).  Outputs and the gradient of every input
must equal a step-by-step float64 autograd reference: fp32 within 1e-5 of the largest entry,
bf16 within 3%.  The whole fast model against the reference model is tests/unit/fast/test_equivalence.py.
"""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline.data.batching import collate
from pipeline.data.tokenizer import PAD_ID
from pipeline.fast import accelerate
from pipeline.fast.recurrence import ADDITIVE, DOT, STATIC, gru_recurrence, packed_gru_recurrence
from pipeline.model import build_model
from tests.unit.fast.test_equivalence import config, padded_batch

CPU = torch.device("cpu")
VOCAB = 40


pytestmark = pytest.mark.usefixtures("one_thread")


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.detach().double() - want.detach()).abs().max() / want.detach().abs().max().clamp_min(1e-12))


# ---------------------------------------------------------------- decoder recurrence


def _gru_cell(g, gh, s, hd):
    r, z = torch.sigmoid(g[:, : 2 * hd] + gh[:, : 2 * hd]).chunk(2, 1)
    n = torch.tanh(g[:, 2 * hd :] + r * gh[:, 2 * hd :])
    return (1 - z) * n + z * s


def _stepwise_recurrence(gi, s0, w_q, b_q, w_ic, keys, states, mask, v, mode, scale):
    """Bahdanau et al. 2015, eqs. 4-6 and A.2.2, one autograd step at a time: the context c_i is
    read with s_{i-1} (additive: v_a·tanh(W_a s_{i-1} + U_a h_j); dot: scale·s_{i-1}·k_j) and fed,
    with y_{i-1} (in gi), into the GRU step that gives s_i."""
    hd, s, states_out, contexts, weights = s0.shape[1], s0, [s0], [], []
    for i in range(gi.shape[0]):
        gq = s @ w_q.t() + b_q
        step_gi = gi[i]
        if mode != STATIC:
            if mode == ADDITIVE:
                energies = torch.tanh(keys + gq[:, 3 * hd :].unsqueeze(1)) @ v
            else:
                energies = scale * torch.bmm(keys, s.unsqueeze(2)).squeeze(2)
            alpha = torch.softmax(energies.masked_fill(~mask, float("-inf")), -1)
            c = torch.bmm(alpha.unsqueeze(1), states).squeeze(1)
            step_gi = step_gi + c @ w_ic.t()
            contexts.append(c)
            weights.append(alpha)
        s = _gru_cell(step_gi, gq[:, : 3 * hd], s, hd)
        states_out.append(s)
    return torch.stack(states_out), contexts and torch.stack(contexts), weights and torch.stack(weights)


def _recurrence_inputs(mode: str, seed: int, t_len=6, batch=5, hd=12, src=7, ctx=10, attn=9):
    """Float64 leaves: gi, s0, W_q, b_q and, with attention, W_ic, keys, states, v (+ mask, a bool)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    lens = torch.randint(1, src + 1, (batch,), generator=g)
    lens[0] = src
    mask = torch.arange(src)[None, :] < lens[:, None]
    query_rows = 3 * hd + (attn if mode == ADDITIVE else 0)
    inputs = {"gi": rand(t_len, batch, 3 * hd), "s0": rand(batch, hd, scale=0.5)}
    inputs["w_q"], inputs["b_q"] = rand(query_rows, hd, scale=hd**-0.5), rand(query_rows, scale=0.1)
    if mode != STATIC:
        key_dim = attn if mode == ADDITIVE else hd
        inputs["w_ic"] = rand(3 * hd, ctx, scale=ctx**-0.5)
        inputs["keys"] = rand(batch, src, key_dim, scale=0.5)
        inputs["states"] = (
            torch.randn(batch, src, ctx, generator=g, dtype=torch.float64) * mask[..., None]
        ).requires_grad_()
        if mode == ADDITIVE:
            inputs["v"] = rand(attn, scale=0.3)
    return inputs, mask


@pytest.mark.parametrize("mode, scale", [(ADDITIVE, 1.0), (DOT, 1.0), (DOT, 0.3), (STATIC, 1.0)])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gru_recurrence_equals_stepwise_autograd(mode, scale, precision, kernels):
    """s, c, α and the gradients of gi, s_0, W_q, b_q, W_ic, the keys, the annotations and v_a;
    the weights stay float32 under bf16 and get float32 gradients, as in the model."""
    ref_inputs, mask = _recurrence_inputs(mode, seed=len(mode) + int(10 * scale))
    full = {"w_ic": None, "keys": None, "states": None, "v": None, **ref_inputs}
    ref = _stepwise_recurrence(**full, mask=mask, mode=mode, scale=scale)
    g = torch.Generator().manual_seed(99)
    upstream = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in ref[:2] if torch.is_tensor(t)]
    ref_grads = torch.autograd.grad(sum((t * u).sum() for t, u in zip(ref, upstream)), list(ref_inputs.values()))

    dt = torch.float32 if precision == "fp32" else torch.bfloat16
    weights = {"w_q", "b_q", "w_ic"}
    inputs = {k: t.detach().to(torch.float32 if k in weights else dt).requires_grad_() for k, t in ref_inputs.items()}
    out = gru_recurrence(**inputs, mask=mask, mode=mode, scale=scale, kernels=kernels)
    grads = torch.autograd.grad(sum((t.double() * u).sum() for t, u in zip(out, upstream)), list(inputs.values()))
    tol = 1e-5 if precision == "fp32" else 0.03
    assert out[0].dtype == dt
    for name, got, want in zip(("s", "c", "α"), out, ref):
        if torch.is_tensor(want):
            assert _relative_error(got, want) <= tol, (name, _relative_error(got, want))
    for name, got, want in zip(ref_inputs, grads, ref_grads):
        assert got.dtype == (torch.float32 if name in weights else dt), name
        assert _relative_error(got, want) <= tol, (name, _relative_error(got, want))


def _recurrence_grads(dtype, seed, kernels, t_len=40, batch=8, hd=32, weight_dtype=None):
    """Gradients of a baseline-style GRU recurrence (gi, s0, W_hh, b_hh) for fixed upstream ∂s, each in
    its input's dtype.  The weights hold bf16 values, given in ``weight_dtype`` (default: ``dtype``)."""
    g = torch.Generator().manual_seed(seed)
    gi, s0 = torch.randn(t_len, batch, 3 * hd, generator=g), 0.5 * torch.randn(batch, hd, generator=g)
    w, b = torch.randn(3 * hd, hd, generator=g) / hd**0.5, 0.1 * torch.randn(3 * hd, generator=g)
    upstream = torch.randn(t_len + 1, batch, hd, generator=g)
    w, b = (t.bfloat16().to(weight_dtype or dtype) for t in (w, b))
    inputs = [t.to(dtype).requires_grad_() for t in (gi, s0)] + [w.requires_grad_(), b.requires_grad_()]
    s_all, _, _ = gru_recurrence(*inputs, kernels=kernels)
    (s_all.double() * upstream.double()).sum().backward()
    return [t.grad for t in inputs]


@pytest.mark.parametrize("seed", [0, 1])
def test_float32_weights_get_float32_gradients_under_bf16(seed, kernels, mixed_gemm_path):
    """bf16 compute with the float32 parameters passed in (as the model does): their gradients
    come back float32, summed over all 40 steps in float32, and no farther from float64 than when
    bf16 copies of the weights are passed."""
    ref = _recurrence_grads(torch.float64, seed, None)
    f32 = _recurrence_grads(torch.bfloat16, seed, kernels, weight_dtype=torch.float32)
    bf16 = _recurrence_grads(torch.bfloat16, seed, kernels)
    assert [g.dtype for g in f32] == [torch.bfloat16, torch.bfloat16, torch.float32, torch.float32]
    for name, got, old, want in zip(("W_hh", "b_hh"), f32[2:], bf16[2:], ref[2:]):
        got, old = got.double(), old.double()
        err, old_err = float((got - want).norm() / want.norm()), float((old - want).norm() / want.norm())
        assert err < 0.01 and err <= old_err, (name, err, old_err)


# ---------------------------------------------------------------- encoder recurrence


def _stepwise_packed_gru(gi, s0, w, b, batch_sizes):
    """One autograd GRU step per packed step, on the first ``batch_sizes[t]`` rows."""
    hd, outs, s, start = s0.shape[1], [], s0, 0
    for live in batch_sizes:
        s = _gru_cell(gi[start : start + live], s[:live] @ w.t() + b, s[:live], hd)
        outs.append(s)
        start += live
    return torch.cat(outs)


@pytest.mark.parametrize(
    "batch_sizes",
    [[1] * 5, [5], [4] * 6, [8, 1, 1], [6, 6, 4, 4, 3, 1], [7, 7, 7, 3]],
    ids=["one sentence", "length 1", "equal lengths", "big drop", "several end together", "mixed widths"],
)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_packed_gru_recurrence_equals_stepwise_autograd(batch_sizes, precision, kernels):
    """Outputs and the gradients of gi, s0, W_hh and b_hh (s0 random, so ∂s0 is checked) against
    float64 autograd: fp32 within 1e-5 of the largest entry, bf16 within 3% (the weights stay
    float32 and get float32 gradients)."""
    g = torch.Generator().manual_seed(len(batch_sizes))
    hd, rows = 16, sum(batch_sizes)
    ref_inputs = [
        torch.randn(rows, 3 * hd, generator=g, dtype=torch.float64),
        torch.randn(batch_sizes[0], hd, generator=g, dtype=torch.float64),
        0.3 * torch.randn(3 * hd, hd, generator=g, dtype=torch.float64),
        torch.randn(3 * hd, generator=g, dtype=torch.float64),
    ]
    upstream = torch.randn(rows, hd, generator=g, dtype=torch.float64)
    ref_inputs = [t.requires_grad_() for t in ref_inputs]
    ref = _stepwise_packed_gru(*ref_inputs, batch_sizes)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), ref_inputs)
    dt = torch.float32 if precision == "fp32" else torch.bfloat16
    inputs = [t.detach().to(d).requires_grad_() for t, d in zip(ref_inputs, (dt, dt, torch.float32, torch.float32))]
    out = packed_gru_recurrence(*inputs, batch_sizes, kernels)
    grads = torch.autograd.grad((out.double() * upstream).sum(), inputs)
    tol = 1e-5 if precision == "fp32" else 0.03
    assert out.dtype == dt and [t.dtype for t in grads] == [dt, dt, torch.float32, torch.float32]
    for name, got, want in zip(("s", "gi", "s0", "W_hh", "b_hh"), (out, *grads), (ref, *ref_grads)):
        assert _relative_error(got, want) <= tol, (name, _relative_error(got, want))


def _models():
    """The reference model and its accelerated copy (model.impl=auto), same parameters, in eval mode."""
    torch.manual_seed(0)
    reference = build_model(config("additive"), VOCAB, VOCAB, PAD_ID).eval()
    return reference, accelerate(copy.deepcopy(reference), "auto", CPU).model


def test_fast_encoder_under_bf16_stays_near_the_fp32_reference():
    """Annotations under bf16 autocast within 2% of the largest fp32 entry, exactly 0 on padding
    (nn.GRU, which autocast leaves in fp32, is the reference)."""
    reference, fast = _models()
    b = padded_batch(seed=15)
    assert len(set(b.src_lens.tolist())) > 2  # a batch with real padding
    with torch.no_grad():
        want = reference.encode(b.src, b.src_lens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fast.encode(b.src, b.src_lens)
    assert got.states.dtype == torch.bfloat16
    assert (got.states.float() - want.states).abs().max() <= 0.02 * want.states.abs().max()
    assert (got.states[~want.mask] == 0).all()


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_encoder_gives_each_sentence_what_it_gets_alone(impl):
    """A batch with one-piece sources (EOS only) and one long source gives each sentence the
    annotations it gets alone, 0 on padding, on either path."""
    model = dict(zip(("reference", "fast"), _models()))[impl]
    sources = [[], [5, 6, 7, 8, 9, 10, 11], [12], [], [13, 14, 15]]
    batch = collate(sources, [[4]] * len(sources), list(range(len(sources))))
    with torch.no_grad():
        together = model.encoder(batch.src, batch.src_lens)
        for i, src in enumerate(sources):
            alone = collate([src], [[4]], [0])
            one = model.encoder(alone.src, alone.src_lens)
            length = len(src) + 1
            torch.testing.assert_close(together.states[i, :length], one.states[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(together.summary[i], one.summary[0], atol=1e-6, rtol=0)
            assert (together.states[i, length:] == 0).all()


def test_fast_forward_without_grad_equals_with_grad():
    """The no-grad forward saves nothing for the backward, and computes the same numbers."""
    _, fast = _models()
    b = padded_batch(seed=12)
    with_grad, attn = fast(b.src, b.src_lens, b.tgt_in)
    with torch.no_grad():
        without, attn_ng = fast(b.src, b.src_lens, b.tgt_in)
    assert torch.equal(with_grad.detach(), without) and torch.equal(attn, attn_ng)
