"""EMA of the weights: the update rule, exact resume, and which weights validation and decoding use."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tinydata import tiny_train_config, write_slice

from pipeline.config import EmaConfig
from pipeline.errors import UserError
from pipeline.training.checkpoint import load_checkpoint, restore
from pipeline.training.ema import WeightAverage, ema_decay
from pipeline.training.trainer import train


def test_the_average_follows_its_formula_and_is_swapped_in_and_out():
    layer = torch.nn.Linear(3, 2)
    ema = WeightAverage(layer, decay=0.9)
    want = [p.detach().clone() for p in layer.parameters()]
    for t in range(1, 30):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(torch.randn_like(p))
        ema.update(t)
        d = min(0.9, (1 + t) / (10 + t))
        want = [d * w + (1 - d) * p.detach() for w, p in zip(want, layer.parameters())]
    assert ema_decay(0.9, 1) == pytest.approx(2 / 11) and ema_decay(0.9, 1000) == 0.9
    trained = [p.detach().clone() for p in layer.parameters()]
    with ema.applied():
        for p, w in zip(layer.parameters(), want):
            assert torch.allclose(p, w, atol=1e-6)
    for p, t in zip(layer.parameters(), trained):
        assert torch.equal(p, t)


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("m30k"))


def _with_ema(cfg, **ema):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ema=EmaConfig(decay=0.99, **ema)))


def test_validation_scores_the_average_and_decoding_loads_it_unless_told(tmp_path, slice_dir):
    """(Exact resume with EMA: tests/unit/training/test_train.py::test_resume_is_bit_identical.)"""
    train(_with_ema(tiny_train_config(tmp_path, slice_dir, max_steps=6, eval_every=3)))
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(last)
    assert ckpt["decode_weights"] == "ema"
    assert not all(torch.equal(ckpt["model"][k], ckpt["ema"][k]) for k in ckpt["model"])
    default, trained = restore(last), restore(last, weights="model")
    assert default.weights == "ema" and trained.weights == "model"
    for (name, p), q in zip(default.model.named_parameters(), trained.model.parameters()):
        assert torch.equal(p, ckpt["ema"][name]) and torch.equal(q, ckpt["model"][name]), name


def test_weights_ema_of_a_run_without_it_and_resuming_with_ema_are_one_line_errors(tmp_path, slice_dir):
    cfg = tiny_train_config(tmp_path, slice_dir, max_steps=4, eval_every=4)
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["decode_weights"] == "model"
    with pytest.raises(UserError, match="holds no EMA weights"):
        restore(last, weights="ema")
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=8))
    with pytest.raises(UserError, match="trained without train.ema.decay"):
        train(_with_ema(longer))
