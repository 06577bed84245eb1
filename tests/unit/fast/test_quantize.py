"""int8 decoding (``decode.quantize=int8``, pipeline/fast/quantize.py): what it replaces, that a
trained model translates the same with it, and the one-line errors where it does not apply."""

from __future__ import annotations

import pytest
import torch
from copytask import copy_inputs, train_copy
from torch import nn

from pipeline.config import DecodeConfig, Precision, Quantize, Strategy
from pipeline.data.batching import collate
from pipeline.data.tokenizer import PAD_ID
from pipeline.decoding.search import decode
from pipeline.decoding.translate import decode_in_bf16
from pipeline.errors import UserError
from pipeline.evaluation.evaluate import decode_tag
from pipeline.fast import accelerate
from pipeline.fast.quantize import int8_engine, quantize_int8
from pipeline.model import build_model
from pipeline.model.config import AttentionConfig, ContextType, DecoderConfig, EncoderConfig, ModelConfig
from pipeline.training.validation import reject_quantized_validation

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(int8_engine() is None, reason="this torch build has no quantised CPU engine"),
]
VOCAB = 14
CPU = torch.device("cpu")


def copy_model_config(context: ContextType) -> ModelConfig:
    return ModelConfig(
        context=context,
        emb_dim=32,
        dropout=0.0,
        encoder=EncoderConfig(hidden_dim=32, layers=1, dropout=0.0),
        decoder=DecoderConfig(hidden_dim=64, readout_dim=32),
        attention=AttentionConfig(dim=32),
    )


@pytest.fixture(scope="module")
def copy_model():
    """An RNNsearch trained to copy (tests/copytask.py), with held-out inputs; built as ``model.impl=auto``."""
    torch.manual_seed(0)
    implementations = accelerate(
        build_model(copy_model_config(ContextType.attention), VOCAB, VOCAB, PAD_ID), "auto", CPU
    )
    g = torch.Generator().manual_seed(0)
    train_copy(implementations.model, VOCAB, g)
    implementations.model.eval()
    return implementations, copy_inputs(48, VOCAB, g)


def _decode(model, top_k, seqs, strategy: Strategy):
    cfg = DecodeConfig(strategy=strategy, beam_size=3 if strategy is Strategy.beam else 1, max_len=50)
    return decode(model, collate(seqs, None, list(range(len(seqs)))), cfg, top_k=top_k)


def test_int8_replaces_linear_layers_and_cells_but_keeps_embeddings():
    model = build_model(copy_model_config(ContextType.attention), VOCAB, VOCAB, PAD_ID).eval()
    embedding = model.decoder.embedding.weight.detach().clone()
    names = quantize_int8(model, CPU)
    assert {"decoder.out", "decoder.readout", "decoder.cell", "decoder.W_s"} <= set(names)
    assert not any(type(m) in (nn.Linear, nn.GRUCell) for m in model.modules())
    assert torch.equal(model.decoder.embedding.weight, embedding)  # tied W_o got its own int8 copy
    assert isinstance(model.encoder.rnn, nn.GRU)  # runs once per sentence: kept in float


@pytest.mark.parametrize("strategy", [Strategy.greedy, Strategy.beam])
def test_trained_model_translates_the_same_in_int8(copy_model, strategy):
    """The copy model reproduces every held-out input exactly in fp32; in int8 it still does, with
    nearly the same scores and attention weights."""
    implementations, seqs = copy_model
    model = implementations.model
    fp32 = _decode(model, implementations.top_log_probs, seqs, strategy)
    assert [h.tokens for h in fp32] == seqs
    quantized = build_model(copy_model_config(ContextType.attention), VOCAB, VOCAB, PAD_ID)
    quantized.load_state_dict(model.state_dict())
    auto = accelerate(quantized.eval(), "auto", CPU)
    quantize_int8(auto.model, CPU)
    int8 = _decode(auto.model, auto.top_log_probs, seqs, strategy)
    assert [h.tokens for h in int8] == seqs
    for a, b in zip(fp32, int8):
        assert (a.attention - b.attention).abs().max() < 0.05
        assert abs(a.score - b.score) < 0.05 * max(1.0, abs(a.score))


def test_int8_baseline_decodes():
    """The no-attention baseline quantises too (its fixed context goes through the same cell and readout)."""
    torch.manual_seed(0)
    model = build_model(copy_model_config(ContextType.fixed), VOCAB, VOCAB, PAD_ID).eval()
    quantize_int8(model, CPU)
    seqs = copy_inputs(6, VOCAB, torch.Generator().manual_seed(1))
    hyps = _decode(model, None, seqs, Strategy.beam)
    assert len(hyps) == len(seqs) and all(h.attention is None for h in hyps)


def test_int8_is_refused_where_it_does_not_apply():
    model = build_model(copy_model_config(ContextType.attention), VOCAB, VOCAB, PAD_ID).eval()
    with pytest.raises(UserError, match="CPU only"):
        quantize_int8(model, torch.device("cuda"))
    with pytest.raises(UserError, match="precision=bf16"):
        decode_in_bf16(Precision.bf16, Quantize.int8, CPU)
    assert decode_in_bf16(Precision.auto, Quantize.int8, CPU) is False
    with pytest.raises(UserError, match="drop decode.quantize from the train command"):
        reject_quantized_validation(DecodeConfig(quantize=Quantize.int8))


def test_int8_results_get_their_own_file_names():
    assert decode_tag(DecodeConfig(quantize=Quantize.int8)) == "greedy-int8"
    assert decode_tag(DecodeConfig(strategy=Strategy.beam, beam_size=5, quantize=Quantize.int8)) == "beam5-int8"
    assert decode_tag(DecodeConfig()) == "greedy"
