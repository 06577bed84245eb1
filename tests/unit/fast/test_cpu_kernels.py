"""The fused CPU kernels (pipeline/fast/kernels/) against the same computation in torch ops:
the additive attention step (scores, masked softmax and context forward; the gradients of keys,
query and v_a backward), the GRU cell's gates and update (forward and backward), and the
label-smoothed cross-entropy with its gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.fast.cpu_kernels import cpu_kernels


@pytest.fixture(scope="module")
def kernel():
    module = cpu_kernels(torch.device("cpu"))
    assert module is not None, "the fused CPU attention kernel did not build: is g++ installed? (see the log warning)"
    return module


def _inputs(dtype, b=7, s=9, a=48, c=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(b, s, a, generator=g).to(dtype)
    q = torch.randn(b, a, generator=g)
    v = torch.randn(a, generator=g) * 0.3
    states = torch.randn(b, s, c, generator=g).to(dtype)
    lens = torch.randint(1, s + 1, (b,), generator=g)
    lens[0] = s
    mask = torch.arange(s)[None, :] < lens[:, None]
    d_context = torch.randn(b, c, generator=g)
    return keys, q, v, states, mask, d_context


def _reference(keys, q, v, states, mask, d_context):
    """Eqs. 5-6 in float32 torch ops, and autograd's gradients of Σ c·∂c."""
    k, qq, vv = (t.float().clone().requires_grad_() for t in (keys, q, v))
    energies = torch.matmul(torch.tanh(k + qq.unsqueeze(1)), vv)
    alpha = torch.softmax(energies.masked_fill(~mask, float("-inf")), -1)
    context = torch.bmm(alpha.unsqueeze(1), states.float()).squeeze(1)
    (context * d_context).sum().backward()
    return alpha.detach(), context.detach(), k.grad, qq.grad, vv.grad


def _kernel(kernel, keys, q, v, states, mask, d_context):
    alpha = torch.empty(mask.shape)
    context = torch.empty(keys.shape[0], states.shape[2], dtype=keys.dtype)
    kernel.attention_forward(keys, q, v, states, mask, alpha, context)
    d_keys, d_v = torch.zeros(keys.shape), torch.zeros(v.shape)
    d_q = kernel.attention_backward(keys, q, v, states, mask, alpha, d_context, d_keys, d_v)
    return alpha, context, d_keys, d_q, d_v


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_equals_torch_ops_in_fp32(kernel, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # the backward sums ∂v_a over per-thread partials
    try:
        inputs = _inputs(torch.float32)
        got = _kernel(kernel, *inputs)
    finally:
        torch.set_num_threads(before)
    for name, mine, ref in zip(("alpha", "context", "keys", "q", "v"), got, _reference(*inputs)):
        torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-5, msg=name)


def test_padding_gets_no_weight_and_no_gradient(kernel):
    keys, q, v, states, mask, d_context = _inputs(torch.float32, seed=1)
    assert not mask.all()
    alpha, _, d_keys, _, _ = _kernel(kernel, keys, q, v, states, mask, d_context)
    assert (alpha[~mask] == 0).all() and (d_keys[~mask] == 0).all()
    torch.testing.assert_close(alpha.sum(1), torch.ones(len(alpha)))


def test_kernel_in_bf16_stays_within_bf16_rounding(kernel):
    """bf16 keys and annotations, float32 arithmetic: only the inputs' and the context's bf16
    rounding separates the kernel from float32 math on the same (rounded) inputs."""
    inputs = _inputs(torch.bfloat16, seed=2)
    got = _kernel(kernel, *inputs)
    ref = _reference(*inputs)
    for name, mine, want in zip(("alpha", "context", "keys", "q", "v"), got, ref):
        tol = 1e-2 * want.abs().max() if name == "context" else 1e-5 * max(1.0, want.abs().max())
        assert (mine.float() - want).abs().max() <= tol, name


def test_kernels_are_only_for_cpu_tensors():
    assert cpu_kernels(torch.device("meta")) is None


def _cell_reference(gi, gh, s_prev):
    """torch.nn.GRUCell's gates from pre-activations, in float32: (r|z, n, s)."""
    hd = s_prev.shape[1]
    rz = torch.sigmoid(gi[:, : 2 * hd] + gh[:, : 2 * hd])
    r, z = rz.chunk(2, 1)
    n = torch.tanh(gi[:, 2 * hd :] + r * gh[:, 2 * hd : 3 * hd])
    return rz, n, torch.lerp(n, s_prev, z)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gru_cell_kernel_equals_torch_ops(kernel, dtype):
    """Forward and backward of the gates; gh is the first 3H columns of wider rows, as the
    decoder's [W_hh ; W_a] s GEMM gives.  bf16: float32 math on the same inputs, rounded once."""
    g = torch.Generator().manual_seed(3)
    b, hd = 7, 40
    gi, gh = torch.randn(b, 3 * hd, generator=g).to(dtype), torch.randn(b, 3 * hd + 9, generator=g).to(dtype)
    s_prev, ds = torch.randn(b, hd, generator=g).to(dtype), torch.randn(b, hd, generator=g).to(dtype)
    rz, n, ghn, s = (torch.empty(b, w, dtype=dtype) for w in (2 * hd, hd, hd, hd))
    kernel.gru_cell_forward(gi, gh, s_prev, rz, n, ghn, s)
    d_gi, d_gh, ds_prev = torch.empty_like(gi), torch.zeros_like(gh), torch.empty_like(s_prev)
    kernel.gru_cell_backward(ds, s_prev, rz, n, ghn, d_gi, d_gh, ds_prev)

    inputs = [t.float().requires_grad_() for t in (gi, gh, s_prev)]
    ref = _cell_reference(*inputs)
    ref[2].backward(ds.float())
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=2**-7)
    for name, mine, want in zip(("rz", "n", "s"), (rz, n, s), ref):
        torch.testing.assert_close(mine.float(), want.detach(), **tol, msg=name)
    assert torch.equal(ghn, gh[:, 2 * hd : 3 * hd])
    torch.testing.assert_close(d_gi.float(), inputs[0].grad, **tol)
    torch.testing.assert_close(d_gh[:, : 3 * hd].float(), inputs[1].grad[:, : 3 * hd], **tol)
    assert (d_gh[:, 3 * hd :] == 0).all()  # the columns after 3H are the caller's
    torch.testing.assert_close(ds_prev.float(), inputs[2].grad, **tol)  # z ⊙ ∂s (gh is an input here)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_kernel_equals_torch_ops(kernel, dtype, smoothing, threads):
    """Loss, gradient (written over the logits) and its column sums (the bias gradient, added to
    what d_bias held) against autograd through F.cross_entropy in float32; the bf16 gradient is
    rounded once on store.  Without write_grad the logits are left alone."""
    g = torch.Generator().manual_seed(4)
    n, vocab = 37, 301  # not multiples of the vector width
    logits = (torch.randn(n, vocab, generator=g) * 4).to(dtype)
    target = torch.randint(0, vocab, (n,), generator=g)
    ref_in = logits.float().requires_grad_()
    ref = F.cross_entropy(ref_in, target, label_smoothing=smoothing, reduction="sum")
    ref.backward()

    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # the column sums are added from per-thread partials
    try:
        untouched = logits.clone()
        assert kernel.smoothed_cross_entropy(untouched, target, smoothing, None, False, None) == pytest.approx(
            ref.item(), rel=1e-6
        )
        assert torch.equal(untouched, logits)
        grad, d_bias = logits.clone(), torch.ones(vocab)
        loss = kernel.smoothed_cross_entropy(grad, target, smoothing, d_bias, True, None)
    finally:
        torch.set_num_threads(before)
    assert loss == pytest.approx(ref.item(), rel=1e-6)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-5, rtol=2**-8)
    torch.testing.assert_close(grad.float(), ref_in.grad, **tol)
    torch.testing.assert_close(d_bias - 1, ref_in.grad.sum(0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_kernel_adds_the_bias_in_float32(kernel, dtype):
    """logits + bias, the bias added on the kernel's read (float32): the loss and gradient of
    F.cross_entropy over (logits + bias), with the gradient still written over the logits."""
    g = torch.Generator().manual_seed(5)
    n, vocab = 19, 301
    logits = (torch.randn(n, vocab, generator=g) * 3).to(dtype)
    bias = torch.randn(vocab, generator=g) * 2
    target = torch.randint(0, vocab, (n,), generator=g)
    ref_in = (logits.float() + bias).requires_grad_()
    ref = F.cross_entropy(ref_in, target, label_smoothing=0.1, reduction="sum")
    ref.backward()
    grad, d_bias = logits.clone(), torch.zeros(vocab)
    loss = kernel.smoothed_cross_entropy(grad, target, 0.1, d_bias, True, bias)
    assert loss == pytest.approx(ref.item(), rel=1e-6)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-5, rtol=2**-8)
    torch.testing.assert_close(grad.float(), ref_in.grad, **tol)
    torch.testing.assert_close(d_bias, ref_in.grad.sum(0), atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="bias \\[V\\] float32"):
        kernel.smoothed_cross_entropy(logits.clone(), target, 0.1, None, False, bias[:-1])


def test_cross_entropy_kernel_rejects_a_target_out_of_range(kernel):
    with pytest.raises(RuntimeError, match="target 7 not in"):
        kernel.smoothed_cross_entropy(torch.zeros(2, 7), torch.tensor([0, 7]), 0.1, None, True, None)


def _top_log_probs_reference(logits, forced, k, banned=(0, 1), forced_token=2):
    """The specification: fp32 log-softmax over all tokens, banned ids and (in forced rows) all
    but forced_token set to -inf, every token sorted by value descending then id ascending."""
    lp = torch.log_softmax(logits.float(), -1)
    lp[:, list(banned)] = float("-inf")
    lp[forced] = torch.where(torch.arange(lp.shape[1]) == forced_token, lp[forced], float("-inf"))
    order = torch.arange(lp.shape[1]).expand_as(lp)
    values, pos = lp.sort(dim=-1, descending=True, stable=True)
    return values[:, :k], order.gather(1, pos)[:, :k]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_log_probs_kernel_equals_the_specification(kernel, dtype, k, threads):
    """Values and ids of the k best tokens per row, with ties (logits on a coarse grid, so many
    equal values: the lower id must come first), a model's own -inf entries, banned ids (PAD,
    BOS) and forced rows that may only end."""
    g = torch.Generator().manual_seed(5)
    n, vocab = 23, 301
    logits = (torch.randint(-6, 7, (n, vocab), generator=g) * 0.5).to(dtype)
    logits[3, 50:] = float("-inf")
    logits[4, 1] = 10.0  # the best token is banned (BOS)
    forced = torch.zeros(n, dtype=torch.bool)
    forced[[2, 7]] = True
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        values, ids = kernel.top_log_probs(logits, k, [0, 1], forced, 2)
    finally:
        torch.set_num_threads(before)
    want_values, want_ids = _top_log_probs_reference(logits, forced, k)
    torch.testing.assert_close(values, want_values, atol=1e-5, rtol=1e-6)
    finite = torch.isfinite(want_values)
    assert torch.equal(ids[finite], want_ids[finite])
    assert (values[2, 1:] == float("-inf")).all() and (ids[2, 0] == 2)


def test_top_log_probs_kernel_fills_missing_candidates_with_minus_infinity(kernel):
    """Fewer allowed tokens than k (a tiny vocabulary, or a forced row): the rest are -inf with
    distinct ids, so that the beam search can rank and drop them."""
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0, 0.0]])
    values, ids = kernel.top_log_probs(logits, 5, [0, 1], torch.tensor([False, True]), 2)
    lp = torch.log_softmax(logits, -1)
    torch.testing.assert_close(values[0, :3], lp[0, [4, 3, 2]])
    assert ids[0, :3].tolist() == [4, 3, 2] and (values[0, 3:] == float("-inf")).all()
    assert ids[1, 0] == 2 and values[1, 0] == pytest.approx(float(lp[1, 2]))
    assert (values[1, 1:] == float("-inf")).all()
    assert sorted(ids[0].tolist()) == sorted(ids[1].tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="k=6 not in"):
        kernel.top_log_probs(logits, 6, [0, 1], None, 2)


def test_a_failed_build_falls_back_to_torch_ops_with_one_warning(monkeypatch, caplog):
    """No compiler: one warning naming the cause and the key that silences it; the fast modules
    then run their torch ops (tested against the same references in test_recurrence.py), and the
    search's kernel, which has no such fallback, is reported as not chosen."""
    from pipeline.data.tokenizer import PAD_ID
    from pipeline.fast import accelerate
    from pipeline.fast import cpu_kernels as module
    from pipeline.model import ModelConfig, build_model

    def no_compiler():
        raise RuntimeError("Error building extension: g++: command not found")

    monkeypatch.setattr(module, "_module", None)
    monkeypatch.setattr(module, "_failed", False)
    monkeypatch.setattr(module, "_build", no_compiler)
    with caplog.at_level("WARNING", logger="pipeline.fast.cpu_kernels"):
        assert cpu_kernels(torch.device("cpu")) is None
        assert cpu_kernels(torch.device("cpu")) is None  # not retried, not warned again
        implementations = accelerate(build_model(ModelConfig(), 30, 30, PAD_ID), "auto", torch.device("cpu"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "g++: command not found" in warnings[0] and "model.impl=reference" in warnings[0]
    assert implementations.top_log_probs is None
    assert "the C++ kernels could not be built" in implementations.summary()
    assert implementations.model.decoder.kernels is None  # built, on torch ops
