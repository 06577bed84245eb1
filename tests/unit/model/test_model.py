"""The reference model (pipeline/model/): attention, padding invariance, step/forward agreement, overfitting."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from tinydata import REPO

from pipeline.config import (
    AttentionPlacement,
    AttentionScore,
    ContextType,
    DecoderConfig,
    EncoderConfig,
    InitState,
    ModelConfig,
    Readout,
    ReadoutState,
    RnnType,
)
from pipeline.data.batching import collate
from pipeline.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from pipeline.errors import UserError
from pipeline.model import (
    AdditiveAttention,
    AttentionContext,
    Decoder,
    DotAttention,
    EncoderOutput,
    FixedContext,
    GeneralAttention,
    ScaledDotAttention,
    Seq2Seq,
    build_model,
)
from pipeline.model.decoder import maxout_pairs
from pipeline.model.luong import LuongDecoder

MULTIPLICATIVE = {"dot": DotAttention, "general": GeneralAttention, "scaled_dot": ScaledDotAttention}

VOCAB = 30
CONTEXTS = [ContextType.attention, ContextType.fixed]
# every context module: the four attention scores and the fixed context of the baseline, and
# Luong's placement (query s_i, h̃ output) with an additive and a multiplicative score
SYSTEMS = [*(score.value for score in AttentionScore), "baseline", "luong_additive", "luong_general"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(context: ContextType | str = ContextType.attention, dropout: float = 0.0, **dec) -> ModelConfig:
    """A tiny model; ``context`` is a ContextType (attention = additive) or a name from SYSTEMS."""
    dec_kw = {"hidden_dim": 32, "readout_dim": 16, "tie_embeddings": True}
    dec_kw.update(dec)
    fixed = context in (ContextType.fixed, "baseline")
    luong = isinstance(context, str) and context.startswith("luong_")
    name = context.removeprefix("luong_") if luong else context
    score = AttentionScore(name) if name in {s.value for s in AttentionScore} else AttentionScore.additive
    placement = AttentionPlacement.luong if luong else AttentionPlacement.bahdanau
    return ModelConfig(
        context=ContextType.fixed if fixed else ContextType.attention,
        emb_dim=16,
        dropout=dropout,
        encoder=EncoderConfig(rnn=RnnType.gru, hidden_dim=16, layers=2, dropout=dropout),
        decoder=DecoderConfig(**dec_kw),
        attention=dataclasses.replace(ModelConfig().attention, dim=24, score=score, placement=placement),
    )


def make_model(cfg: ModelConfig, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB, VOCAB, PAD_ID)


def random_pairs(n: int, seed: int, lo: int = 3, hi: int = 8):
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        ls, lt = (int(torch.randint(lo, hi + 1, (1,), generator=g)) for _ in range(2))
        src = torch.randint(4, VOCAB, (ls,), generator=g).tolist()
        tgt = torch.randint(4, VOCAB, (lt,), generator=g).tolist()
        pairs.append((src, tgt))
    return pairs


def batch_of(pairs):
    return collate([p[0] for p in pairs], [p[1] for p in pairs], list(range(len(pairs))))


# ---------------------------------------------------------------- attention


def _encoder_output(lens: torch.Tensor, width: int = 6) -> EncoderOutput:
    mask = torch.arange(int(lens.max()))[None, :] < lens[:, None]
    states = torch.randn(len(lens), mask.shape[1], width) * mask.unsqueeze(-1)
    return EncoderOutput(
        states=states, mask=mask, summary=torch.randn(len(lens), width), first_backward=torch.randn(4, 3)
    )


def test_attention_weights_normalised_and_zero_on_padding():
    torch.manual_seed(0)
    context = AttentionContext(AdditiveAttention(query_dim=8, key_dim=6, attn_dim=5))
    enc = _encoder_output(torch.tensor([5, 2, 1, 4]))
    keys = context.precompute(enc)
    assert keys.shape == (4, 5, 5)  # U_a h
    for _ in range(3):
        ctx, w = context(torch.randn(4, 8) * 10, keys, enc, None)
        assert ctx.shape == (4, 6) and w.shape == (4, 5) and w.dtype == torch.float32
        assert torch.allclose(w.sum(-1), torch.ones(4), atol=1e-6)
        assert (w[~enc.mask] == 0).all()
        assert (w[enc.mask] > 0).all()
        assert torch.allclose(ctx, torch.einsum("bs,bsd->bd", w, enc.states), atol=1e-6)  # c_i = Σ_j α_ij h_j


@pytest.mark.parametrize("score", ["dot", "general", "scaled_dot"])
def test_multiplicative_weights_normalised_and_zero_on_padding(score):
    torch.manual_seed(0)
    context = AttentionContext(MULTIPLICATIVE[score](query_dim=8, key_dim=6, attn_dim=5))
    enc = _encoder_output(torch.tensor([5, 2, 1, 4]))
    keys = context.precompute(enc)
    assert keys.shape == (4, 5, 8)  # 2He = 6 != Hd = 8: every score projects the keys to Hd
    ctx, w = context(torch.randn(4, 8) * 3, keys, enc, None)
    assert ctx.shape == (4, 6) and torch.allclose(w.sum(-1), torch.ones(4), atol=1e-6)
    assert (w[~enc.mask] == 0).all() and (w[enc.mask] > 0).all()
    assert torch.allclose(ctx, torch.einsum("bs,bsd->bd", w, enc.states), atol=1e-6)


def test_luong_placement_builds_its_decoder_and_not_for_the_baseline():
    luong = make_model(tiny_cfg("luong_general"))
    assert isinstance(luong.decoder, LuongDecoder) and luong.has_attention
    cfg = tiny_cfg("baseline")
    cfg.attention.placement = AttentionPlacement.luong  # nothing to place: the baseline stays the baseline
    assert isinstance(make_model(cfg).decoder, Decoder)


def test_scaled_dot_is_dot_over_sqrt_d_on_a_hand_built_case():
    """Equal widths (Hd = 2He = 4): dot and scaled_dot have no parameters; energies differ by 1/sqrt(4)."""
    states = torch.tensor([[[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 1.0], [3.0, 3.0, 3.0, 3.0]]])
    mask = torch.tensor([[True, True, False]])
    enc = EncoderOutput(states=states, mask=mask, summary=torch.zeros(1, 4), first_backward=torch.zeros(1, 2))
    q = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    dot, scaled = DotAttention(4, 4, 0), ScaledDotAttention(4, 4, 0)
    assert dot.W is None and scaled.W is None
    energies = torch.tensor([2.0 + 1.0, 1.0 - 1.0])  # q·h_1 = 2 + 0.5*2 = 3, q·h_2 = 1 - 1 = 0
    w_dot = dot(q, dot.precompute(enc.states), enc.mask)
    w_scaled = scaled(q, scaled.precompute(enc.states), enc.mask)
    torch.testing.assert_close(w_dot[0, :2], torch.softmax(energies, 0))
    torch.testing.assert_close(w_scaled[0, :2], torch.softmax(energies / 2.0, 0))
    assert w_dot[0, 2] == 0 and w_scaled[0, 2] == 0


def test_model_attention_rows_sum_to_one_and_zero_on_padding():
    model = make_model(tiny_cfg()).eval()
    b = batch_of(random_pairs(5, seed=1))
    with torch.no_grad():
        _, attn = model(b.src, b.src_lens, b.tgt_in)
    assert attn.shape == (5, b.tgt_in.shape[1], b.src.shape[1])
    assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[:2]), atol=1e-6)
    pad = ~b.src_mask.unsqueeze(1).expand_as(attn)
    assert pad.any() and (attn[pad] == 0).all()


def test_fixed_context_is_step_independent():
    model = make_model(tiny_cfg(ContextType.fixed)).eval()
    assert not model.has_attention and isinstance(model.decoder.context, FixedContext)
    b = batch_of(random_pairs(4, seed=2))
    with torch.no_grad():
        enc = model.encode(b.src, b.src_lens)
        ctx = model.decoder.context
        keys = ctx.precompute(enc)
        c1, a1 = ctx(torch.randn(4, 32), keys, enc, None)
        c2, a2 = ctx(torch.randn(4, 32), keys, enc, None)
        assert a1 is None and a2 is None
        assert torch.equal(c1, c2) and torch.equal(c1, enc.summary)
        _, attn = model(b.src, b.src_lens, b.tgt_in)
        assert attn is None
        state = model.start(enc)
        for t in range(3):
            _, state, a = model.step(b.tgt_in[:, t], state)
            assert a is None


# ---------------------------------------------------------------- encoder


def test_encoder_output_layout():
    model = make_model(tiny_cfg()).eval()
    b = batch_of(random_pairs(4, seed=3))
    with torch.no_grad():
        enc = model.encode(b.src, b.src_lens)
    he = 16
    assert enc.states.shape == (4, b.src.shape[1], 2 * he)
    assert torch.equal(enc.mask, b.src_mask)
    assert (enc.states[~enc.mask] == 0).all()
    last = b.src_lens - 1
    assert torch.equal(enc.summary[:, :he], enc.states[torch.arange(4), last, :he])
    assert torch.equal(enc.summary[:, he:], enc.states[:, 0, he:])
    assert torch.equal(enc.first_backward, enc.states[:, 0, he:])
    idx = torch.tensor([2, 2, 0])
    sub = enc.index_select(idx)
    assert torch.equal(sub.states, enc.states[idx]) and torch.equal(sub.mask, enc.mask[idx])
    assert torch.equal(sub.summary, enc.summary[idx]) and torch.equal(sub.first_backward, enc.first_backward[idx])


# ---------------------------------------------------------------- padding invariance


@pytest.mark.parametrize("context", SYSTEMS)
@pytest.mark.parametrize("init_state", [InitState.first_backward, InitState.mean])
def test_padding_invariance(context, init_state):
    model = make_model(tiny_cfg(context, init_state=init_state)).eval()
    short = ([5, 6, 7], [8, 9])
    neighbours = [([4] * 9, [10] * 7), ([11, 12, 13, 14, 15, 16], [17, 18, 19, 20, 21, 22, 23, 24])]
    alone = batch_of([short])
    mixed = batch_of([neighbours[0], short, neighbours[1]])
    assert mixed.src.shape[1] > alone.src.shape[1] and mixed.tgt_in.shape[1] > alone.tgt_in.shape[1]
    with torch.no_grad():
        lo_a, at_a = model(alone.src, alone.src_lens, alone.tgt_in)
        lo_m, at_m = model(mixed.src, mixed.src_lens, mixed.tgt_in)
    t, s = alone.tgt_in.shape[1], alone.src.shape[1]
    assert torch.allclose(lo_a[0], lo_m[1, :t], atol=1e-5)
    if model.has_attention:
        assert torch.allclose(at_a[0], at_m[1, :t, :s], atol=1e-6)
        assert (at_m[1, :, s:] == 0).all()


# ---------------------------------------------------------------- step vs forward


@pytest.mark.parametrize("context", SYSTEMS)
@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"readout_state": ReadoutState.previous},
        {"readout": Readout.tanh, "init_state": InitState.mean},
    ],
)
def test_step_reproduces_forward(context, variant):
    model = make_model(tiny_cfg(context, **variant)).eval()
    b = batch_of(random_pairs(4, seed=4))
    with torch.no_grad():
        logits, attn = model(b.src, b.src_lens, b.tgt_in)
        state = model.start(model.encode(b.src, b.src_lens))
        for t in range(b.tgt_in.shape[1]):
            lo, state, a = model.step(b.tgt_in[:, t], state)
            assert torch.allclose(lo, logits[:, t], atol=1e-5), t
            if model.has_attention:
                assert torch.allclose(a, attn[:, t], atol=1e-6)
            else:
                assert a is None


@pytest.mark.parametrize("context", SYSTEMS)
def test_decoder_state_index_select(context):
    model = make_model(tiny_cfg(context)).eval()
    b = batch_of(random_pairs(3, seed=5))
    idx = torch.tensor([2, 0, 2, 1])
    with torch.no_grad():
        state = model.start(model.encode(b.src, b.src_lens))
        _, state, _ = model.step(b.tgt_in[:, 0], state)
        rep = state.index_select(idx)
        assert torch.equal(rep.s, state.s[idx]) and torch.equal(rep.keys, state.keys[idx])
        assert torch.equal(rep.enc.states, state.enc.states[idx])
        lo_full, _, _ = model.step(b.tgt_in[:, 1], state)
        lo_rep, _, _ = model.step(b.tgt_in[idx, 1], rep)
        # a beam reorder within groups of rows that share a source: the source side is not copied
        beams = model.start(model.encode(b.src, b.src_lens)).index_select(torch.tensor([0, 0, 1, 1, 2, 2]))
        _, beams, _ = model.step(b.tgt_in[[0, 0, 1, 1, 2, 2], 0], beams)
        within = torch.tensor([1, 0, 2, 3, 5, 4])
        kept = beams.index_select(within, same_source=True)
        assert kept.enc is beams.enc and kept.keys is beams.keys and torch.equal(kept.s, beams.s[within])
        lo_kept, _, _ = model.step(b.tgt_in[[0, 0, 1, 1, 2, 2], 1], kept)
        lo_copied, _, _ = model.step(b.tgt_in[[0, 0, 1, 1, 2, 2], 1], beams.index_select(within))
    assert torch.allclose(lo_rep, lo_full[idx], atol=1e-6)
    assert torch.equal(lo_kept, lo_copied)


# ---------------------------------------------------------------- training behaviour


@pytest.mark.parametrize("context", SYSTEMS)
def test_gradients_reach_every_parameter(context):
    model = make_model(tiny_cfg(context, dropout=0.1)).train()
    b = batch_of(random_pairs(6, seed=6))
    logits, _ = model(b.src, b.src_lens, b.tgt_in)
    F.cross_entropy(logits.reshape(-1, VOCAB), b.tgt_out.reshape(-1), ignore_index=PAD_ID).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("context", SYSTEMS)
def test_overfits_small_set(context):
    model = make_model(tiny_cfg(context), seed=1).train()
    b = batch_of(random_pairs(16, seed=7))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_value = float("inf")
    for step in range(300):  # noqa: B007 (reported on failure)
        opt.zero_grad()
        logits, _ = model(b.src, b.src_lens, b.tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), b.tgt_out.reshape(-1), ignore_index=PAD_ID)
        loss.backward()
        opt.step()
        loss_value = loss.item()
        if loss_value < 0.1:
            break
    assert loss_value < 0.1, f"loss {loss_value:.3f} after {step + 1} steps"


# ---------------------------------------------------------------- variants and config errors


def test_lstm_encoder_and_variants_run():
    cfg = tiny_cfg()
    cfg.encoder.rnn = RnnType.lstm
    cfg.encoder.layers = 1
    for c in CONTEXTS:
        cfg.context = c
        model = make_model(cfg).eval()
        b = batch_of(random_pairs(3, seed=8))
        with torch.no_grad():
            logits, _ = model(b.src, b.src_lens, b.tgt_in)
        assert logits.shape == (3, b.tgt_in.shape[1], VOCAB) and torch.isfinite(logits).all()
    untied = make_model(tiny_cfg(readout_dim=12, tie_embeddings=False, readout=Readout.tanh))
    assert untied.decoder.out.weight.shape == (VOCAB, 12)


def test_tie_embeddings_mismatch_raises():
    with pytest.raises(UserError, match="model.decoder.readout_dim"):
        make_model(tiny_cfg(readout_dim=12, tie_embeddings=True))


def test_tied_weights_are_shared_and_counted_once():
    tied = make_model(tiny_cfg())
    assert tied.decoder.out.weight is tied.decoder.embedding.weight
    untied = make_model(tiny_cfg(tie_embeddings=False))
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * 16


def test_attention_and_baseline_differ_only_in_context_module():
    att = make_model(tiny_cfg(ContextType.attention))
    fix = make_model(tiny_cfg(ContextType.fixed))
    assert att.has_attention and not fix.has_attention
    extra = {n for n, _ in att.named_parameters()} - {n for n, _ in fix.named_parameters()}
    assert all(n.startswith("decoder.context.") for n in extra) and extra
    assert att.num_parameters() - fix.num_parameters() == 2 * 24 * 32 + 24  # W_a, U_a (32 -> 24), v_a


def test_special_ids_are_what_the_model_assumes():
    assert (PAD_ID, BOS_ID, EOS_ID) == (0, 2, 3)
    model = make_model(tiny_cfg())
    assert model.encoder.embedding.padding_idx == PAD_ID == model.decoder.embedding.padding_idx


# ---------------------------------------------------------------- bf16 autocast


def _bf16_autocast_supported() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.mm(torch.randn(2, 2), torch.randn(2, 2))
        return True
    except RuntimeError:  # pragma: no cover - depends on the build
        return False


@pytest.mark.skipif(not _bf16_autocast_supported(), reason="bf16 autocast unsupported on this CPU build")
@pytest.mark.parametrize("context", SYSTEMS)
@pytest.mark.parametrize("rnn", [RnnType.gru, RnnType.lstm])
def test_bf16_autocast_close_to_fp32(context, rnn):
    cfg = tiny_cfg(context)
    cfg.encoder.rnn = rnn
    model = make_model(cfg).eval()
    b = batch_of(random_pairs(4, seed=9))
    with torch.no_grad():
        ref, ref_attn = model(b.src, b.src_lens, b.tgt_in)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lo, attn = model(b.src, b.src_lens, b.tgt_in)
            state = model.start(model.encode(b.src, b.src_lens))
            step_lo, _, _ = model.step(b.tgt_in[:, 0], state)
    assert torch.isfinite(lo.float()).all()
    assert (lo.float() - ref).abs().max() < 0.05 * (1 + ref.abs().max())
    assert (step_lo.float() - ref[:, 0]).abs().max() < 0.05 * (1 + ref.abs().max())
    if attn is not None:
        assert attn.dtype == torch.float32
        assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[:2]), atol=1e-5)
        assert (attn[~b.src_mask.unsqueeze(1).expand_as(attn)] == 0).all()
        assert (attn - ref_attn).abs().max() < 0.1


def test_maxout_is_the_max_of_adjacent_pairs():
    pre = torch.tensor([[1.0, -2.0, 0.5, 3.0, -1.0, -4.0]])
    assert torch.equal(maxout_pairs(pre), torch.tensor([[1.0, 3.0, -1.0]]))


def test_the_model_imports_torch_and_nothing_of_hydra_the_tokenizer_or_the_fast_paths():
    """Built from a plain dataclass and a pad id: importing and building it loads none of them."""
    code = (
        "import sys\n"
        "from pipeline.model import ModelConfig, build_model\n"
        "build_model(ModelConfig(emb_dim=8, decoder=ModelConfig().decoder.__class__(readout_dim=8)), 9, 9, 0)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'sentencepiece', 'datasets')"
        " or m.startswith(('pipeline.fast', 'pipeline.data', 'pipeline.config')))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("context", ["additive", "baseline", "luong_general"])
def test_forward_with_targets_gives_the_summed_loss_of_the_logits(context):
    """model(src, lens, tgt_in, tgt_out) computes the loss inside forward (for DDP): the summed
    label-smoothed cross-entropy of the logits over real target tokens, same value and gradients."""
    model = make_model(tiny_cfg(context)).train()
    b = batch_of(random_pairs(5, seed=14))
    model.zero_grad(set_to_none=True)
    logits, _ = model(b.src, b.src_lens, b.tgt_in)
    ref = F.cross_entropy(
        logits.flatten(0, 1), b.tgt_out.flatten(), ignore_index=PAD_ID, label_smoothing=0.1, reduction="sum"
    )
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss, _ = model(b.src, b.src_lens, b.tgt_in, b.tgt_out, label_smoothing=0.1)
    loss.backward()
    torch.testing.assert_close(loss, ref, atol=1e-4, rtol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], atol=1e-5, rtol=1e-5, msg=name)
