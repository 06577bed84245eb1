"""``model.impl`` and the registry (pipeline/fast/registry.py): what each setting picks, and that a fast
module holds the very parameters of the reference, so checkpoints move freely between them."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from pipeline.data.tokenizer import PAD_ID
from pipeline.errors import UserError
from pipeline.fast import REGISTRY, accelerate, select
from pipeline.fast.decoder import RecurrenceDecoder
from pipeline.fast.encoder import PackedGruEncoder
from pipeline.model import Decoder, Encoder, ModelConfig, build_model
from pipeline.model.config import DecoderConfig, EncoderConfig, RnnType

CPU = torch.device("cpu")


def tiny(**changes) -> ModelConfig:
    cfg = ModelConfig(
        emb_dim=16,
        encoder=EncoderConfig(hidden_dim=16, layers=1),
        decoder=DecoderConfig(hidden_dim=32, readout_dim=16),
    )
    cfg.attention.dim = 24
    return dataclasses.replace(cfg, **changes)


def model(cfg: ModelConfig | None = None):
    torch.manual_seed(0)
    return build_model(cfg or tiny(), 30, 30, PAD_ID)


def chosen(selections) -> dict[str, str | None]:
    return {s.component: s.chosen.name if s.chosen else None for s in selections}


def test_reference_replaces_nothing():
    m = model()
    implementations = accelerate(m, "reference", CPU)
    assert type(m.encoder) is Encoder and type(m.decoder) is Decoder
    assert implementations.top_log_probs is None
    assert set(chosen(implementations.selections).values()) == {None}
    assert implementations.summary().startswith("model.impl=reference: encoder reference, decoder reference")


def test_auto_on_the_cpu_takes_every_fast_implementation_that_covers_the_model():
    m = model()
    implementations = accelerate(m, "auto", CPU)
    assert chosen(implementations.selections) == {
        "encoder": "packed_gru_encoder",
        "decoder": "recurrence_decoder",
        "criterion": "fused_output_loss",
        "search": "top_log_probs_kernel",
    }
    assert isinstance(m.encoder, PackedGruEncoder) and isinstance(m.decoder, RecurrenceDecoder)
    line = implementations.summary()
    assert "\n" not in line and all(impl.name in line for impl in REGISTRY if impl.name != "fused_luong_decoder")


def test_auto_elsewhere_takes_what_runs_there_and_says_why_not_the_rest():
    on_cuda = {s.component: s for s in select(model(), "auto", torch.device("cuda"))}
    assert on_cuda["decoder"].chosen.name == "recurrence_decoder"
    assert on_cuda["encoder"].chosen is None and "cuda" in on_cuda["encoder"].reason
    assert on_cuda["search"].chosen is None
    lstm = {
        s.component: s for s in select(model(tiny(encoder=EncoderConfig(rnn=RnnType.lstm, hidden_dim=16))), "auto", CPU)
    }
    assert lstm["encoder"].chosen is None and "LSTM" in lstm["encoder"].reason


def test_fast_fails_in_one_line_when_no_fast_decoder_covers_the_attention(tmp_path, monkeypatch):
    (tmp_path / "my_scores.py").write_text(
        "import torch\nfrom torch import nn\nfrom pipeline.model.attention import masked_softmax\n"
        "class Mine(nn.Module):\n"
        "    def __init__(self, query_dim, key_dim, attn_dim):\n"
        "        super().__init__()\n        self.w = nn.Linear(key_dim, 1)\n"
        "    def forward(self, query, keys, mask):\n        return masked_softmax(self.w(keys).squeeze(-1), mask)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    user = model(tiny(attention_class="my_scores.Mine"))
    with pytest.raises(UserError) as err:
        accelerate(user, "fast", CPU)
    assert "model.impl=fast" in str(err.value) and "my_scores.Mine" in str(err.value) and "\n" not in str(err.value)
    implementations = accelerate(user, "auto", CPU)  # auto trains it on the reference decoder
    assert type(user.decoder) is Decoder and "decoder reference (" in implementations.summary()


def test_fast_exclude_leaves_a_named_implementation_out_and_names_the_known_ones():
    picked = chosen(select(model(), "auto", CPU, exclude=["fused_output_loss"]))
    assert picked["criterion"] is None and picked["decoder"] == "recurrence_decoder"
    with pytest.raises(UserError, match="not registered; registered: .*packed_gru_encoder"):
        select(model(), "auto", CPU, exclude=["no_such_thing"])


def test_fast_modules_hold_the_reference_parameters_and_checkpoints_move_between_them():
    reference = model()
    fast = accelerate(copy.deepcopy(reference), "auto", CPU).model
    ref_state, fast_state = reference.state_dict(), fast.state_dict()
    assert list(ref_state) == list(fast_state)
    assert all(torch.equal(ref_state[k], fast_state[k]) for k in ref_state)
    before = [p for p in model().parameters()]
    again = model()
    params = list(again.parameters())
    accelerate(again, "auto", CPU)
    assert all(a is b for a, b in zip(params, again.parameters())) and len(params) == len(before)
    fresh = build_model(tiny(), 30, 30, PAD_ID)
    fresh.load_state_dict(fast_state)  # trained fast, restored for the reference
    assert all(torch.equal(fresh.state_dict()[k], ref_state[k]) for k in ref_state)


def test_a_model_accelerated_in_eval_mode_stays_in_eval_mode():
    """The fast modules bring their own dropout modules: they must not start in training mode."""
    cfg = tiny(dropout=0.3)
    reference = model(cfg).eval()
    fast = accelerate(copy.deepcopy(reference), "auto", CPU).model
    assert not any(m.training for m in fast.modules())
    src, lens = torch.randint(4, 30, (3, 6)), torch.tensor([6, 4, 2])
    tgt = torch.randint(4, 30, (3, 5))
    with torch.no_grad():
        torch.testing.assert_close(fast(src, lens, tgt)[0], reference(src, lens, tgt)[0], atol=2e-5, rtol=1e-4)
