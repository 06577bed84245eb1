"""Every registered fast implementation computes what the reference model computes.

On random batches with padding (sources and targets of different lengths), for each case the
reference model (``model.impl=reference``) and a copy accelerated by ``model.impl=auto`` are
compared: logits, attention weights, the summed loss and every parameter's gradient, in fp32 to
float rounding, and under bf16 autocast against the fp32 reference (the fast path's error at
most twice the reference's own bf16 error); then both train 20
steps from one seed and their losses are compared step by step.  A registered implementation
that no case here exercises fails :func:`test_every_registered_implementation_is_exercised`.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from pipeline.data.batching import collate
from pipeline.data.tokenizer import PAD_ID
from pipeline.decoding.search import beam_search, greedy_search
from pipeline.fast import REGISTRY, accelerate
from pipeline.model import ModelConfig, build_model
from pipeline.model.config import (
    AttentionPlacement,
    AttentionScore,
    ContextType,
    DecoderConfig,
    EncoderConfig,
    InitState,
    Readout,
    ReadoutState,
)

VOCAB = 40
CPU = torch.device("cpu")
FP32 = {"atol": 2e-5, "rtol": 1e-4}  # float rounding: other summation orders, fused kernels, -ffast-math

# name -> (context, score, placement, decoder settings)
CASES = {
    "additive": (ContextType.attention, AttentionScore.additive, AttentionPlacement.bahdanau, {}),
    "dot": (ContextType.attention, AttentionScore.dot, AttentionPlacement.bahdanau, {}),
    "general": (ContextType.attention, AttentionScore.general, AttentionPlacement.bahdanau, {}),
    "scaled_dot": (ContextType.attention, AttentionScore.scaled_dot, AttentionPlacement.bahdanau, {}),
    "baseline": (ContextType.fixed, AttentionScore.additive, AttentionPlacement.bahdanau, {}),
    "additive_previous_tanh_mean": (
        ContextType.attention,
        AttentionScore.additive,
        AttentionPlacement.bahdanau,
        {"readout_state": ReadoutState.previous, "readout": Readout.tanh, "init_state": InitState.mean},
    ),
    "baseline_previous": (
        ContextType.fixed,
        AttentionScore.additive,
        AttentionPlacement.bahdanau,
        {"readout_state": ReadoutState.previous},
    ),
    "additive_tanh": (
        ContextType.attention,
        AttentionScore.additive,
        AttentionPlacement.bahdanau,
        {"readout": Readout.tanh},
    ),
    "general_tanh": (
        ContextType.attention,
        AttentionScore.general,
        AttentionPlacement.bahdanau,
        {"readout": Readout.tanh},
    ),
    "baseline_tanh": (
        ContextType.fixed,
        AttentionScore.additive,
        AttentionPlacement.bahdanau,
        {"readout": Readout.tanh},
    ),
    "luong_additive": (ContextType.attention, AttentionScore.additive, AttentionPlacement.luong, {}),
    "luong_general": (ContextType.attention, AttentionScore.general, AttentionPlacement.luong, {}),
    "luong_dot_untied": (
        ContextType.attention,
        AttentionScore.dot,
        AttentionPlacement.luong,
        {"readout_dim": 12, "tie_embeddings": False},
    ),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def config(case: str, dropout: float = 0.0) -> ModelConfig:
    context, score, placement, decoder = CASES[case]
    return ModelConfig(
        context=context,
        emb_dim=16,
        dropout=dropout,
        encoder=EncoderConfig(hidden_dim=16, layers=2, dropout=dropout),
        decoder=DecoderConfig(**{"hidden_dim": 32, "readout_dim": 16, **decoder}),
        attention=dataclasses.replace(ModelConfig().attention, dim=24, score=score, placement=placement),
    )


def pair_of_models(case: str, dropout: float = 0.0, seed: int = 0):
    """(reference, accelerated copy with the same parameters, its Implementations)."""
    torch.manual_seed(seed)
    reference = build_model(config(case, dropout), VOCAB, VOCAB, PAD_ID)
    implementations = accelerate(copy.deepcopy(reference), "auto", CPU)
    return reference, implementations.model, implementations


def padded_batch(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    src = [
        torch.randint(4, VOCAB, (int(torch.randint(1, 11, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
    ]
    tgt = [
        torch.randint(4, VOCAB, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
    ]
    return collate(src, tgt, list(range(n)))


def run(model, b, bf16: bool = False):
    """(logits, attention, loss, {name: gradient}) of one teacher-forced pass."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, attn = model(b.src, b.src_lens, b.tgt_in, b.tgt_out, label_smoothing=0.1)
    loss.backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits, _ = model(b.src, b.src_lens, b.tgt_in)
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return logits.float(), attn, loss.detach(), grads


@pytest.mark.parametrize("case", list(CASES))
def test_fast_equals_reference_in_fp32(case):
    reference, fast, implementations = pair_of_models(case)
    assert implementations.selections[1].chosen is not None, implementations.summary()  # a fast decoder
    b = padded_batch(seed=1)
    ref, got = run(reference, b), run(fast, b)
    torch.testing.assert_close(got[0], ref[0], **FP32)
    if ref[1] is None:
        assert got[1] is None
    else:
        torch.testing.assert_close(got[1], ref[1], **FP32)
        assert (got[1][~b.src_mask.unsqueeze(1).expand_as(got[1])] == 0).all()
    torch.testing.assert_close(got[2], ref[2], **FP32)
    assert ref[3].keys() == got[3].keys()
    for name, grad in ref[3].items():
        torch.testing.assert_close(got[3][name], grad, **FP32, msg=lambda m, name=name: f"{name}: {m}")


def relative_error(got: dict, exact: dict) -> float:
    """|got - exact| / |exact| over all parameters' gradients as one vector."""
    diff = torch.cat([(got[name] - grad).flatten() for name, grad in exact.items()])
    return float(diff.norm() / torch.cat([grad.flatten() for grad in exact.values()]).norm())


@pytest.mark.parametrize("case", ["additive_tanh", "general_tanh", "baseline_tanh", "luong_additive"])
@pytest.mark.parametrize("seed", [2, 3])
def test_fast_under_bf16_autocast_is_as_close_to_fp32_as_the_reference(case, seed):
    """bf16 rounds differently on the two paths, so each is compared with the fp32 reference: the
    fast path's error is at most twice the reference's own bf16 error (measured: ~0.4% against ~0.5%
    of the gradient's norm).  With a tanh readout: a maxout whose winner bf16 rounding flips sends a
    gradient elsewhere on either path, which makes single batches errant by 3-13% on both."""
    reference, fast, _ = pair_of_models(case)
    b = padded_batch(seed=seed)
    exact = run(reference, b)
    ref, got = run(reference, b, bf16=True), run(fast, b, bf16=True)
    assert all(g.dtype == torch.float32 for g in got[3].values())  # float32 master weights, float32 gradients
    assert relative_error(got[3], exact[3]) <= 2 * relative_error(ref[3], exact[3])
    for i, what in ((2, "loss"), (0, "logits"), (1, "attention")):
        if exact[i] is None:
            continue
        got_err, ref_err = (got[i].float() - exact[i]).abs().max(), (ref[i].float() - exact[i]).abs().max()
        assert got_err <= 2 * ref_err + 1e-3 * exact[i].abs().max(), (
            f"{what}: fast {got_err:.3g}, reference {ref_err:.3g}"
        )


@pytest.mark.parametrize("case", ["additive", "baseline", "luong_general"])
def test_twenty_training_steps_give_the_same_losses(case):
    """Adam from one seed, 20 updates on 4 padded batches: the two runs' losses agree step by step."""
    losses = {}
    for impl in ("reference", "auto"):
        torch.manual_seed(0)
        model = build_model(config(case), VOCAB, VOCAB, PAD_ID)
        model = accelerate(model, impl, CPU).model
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        batches = [padded_batch(seed=10 + i) for i in range(4)]
        losses[impl] = []
        for step in range(20):
            b = batches[step % 4]
            opt.zero_grad()
            loss, _ = model(b.src, b.src_lens, b.tgt_in, b.tgt_out, label_smoothing=0.1)
            (loss / b.n_tgt_tokens).backward()
            opt.step()
            losses[impl].append(float(loss.detach()) / b.n_tgt_tokens)
    assert losses["auto"][-1] < losses["auto"][0]  # it trains
    torch.testing.assert_close(torch.tensor(losses["auto"]), torch.tensor(losses["reference"]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["additive", "baseline", "luong_dot_untied"])
def test_searches_give_the_same_translations(case):
    """Greedy and beam search through the fast step and top-k kernel: the same tokens, scores, attention."""
    reference, fast, implementations = pair_of_models(case, seed=3)
    b = padded_batch(seed=4)
    for model, top_k in ((reference, None), (fast, implementations.top_log_probs)):
        model.eval()
        hyps = greedy_search(model, b.src, b.src_lens, 12, 2.0, top_k=top_k)
        beams = beam_search(model, b.src, b.src_lens, 3, 0.6, 12, 2.0, nbest=2, top_k=top_k)
        if top_k is None:
            expected = hyps, beams
            continue
        for got, want in zip(
            [*hyps, *(h for bs in beams for h in bs)], [*expected[0], *(h for bs in expected[1] for h in bs)]
        ):
            assert got.tokens == want.tokens
            assert got.score == pytest.approx(want.score, abs=1e-4)
            if want.attention is not None:
                torch.testing.assert_close(got.attention, want.attention, **FP32)
    assert implementations.top_log_probs is not None  # the kernel was exercised


@pytest.mark.parametrize("case", ["additive", "luong_general"])
def test_dropout_is_applied_in_training_and_not_in_eval(case):
    """The fast paths draw their masks from another generator, so in train mode outputs differ from the
    reference's; in eval mode dropout is off and they agree."""
    reference, fast, _ = pair_of_models(case, dropout=0.3)
    b = padded_batch(seed=5)
    fast.train()
    with torch.no_grad():
        first, _ = fast(b.src, b.src_lens, b.tgt_in)
        second, _ = fast(b.src, b.src_lens, b.tgt_in)
    assert not torch.equal(first, second)
    reference.eval(), fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            fast(b.src, b.src_lens, b.tgt_in)[0], reference(b.src, b.src_lens, b.tgt_in)[0], **FP32
        )


def test_every_registered_implementation_is_exercised():
    exercised = set()
    for case in CASES:
        _, _, implementations = pair_of_models(case)
        exercised |= {s.chosen.name for s in implementations.selections if s.chosen is not None}
    assert exercised == {impl.name for impl in REGISTRY}
