"""Guided alignment (train.guided_alignment): targets from links, the loss, and training that
pulls the attention towards the links, for the built-in attention and for a user's own class."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tinydata import REPO, tiny_train_config, write_slice

from pipeline.data.guided_links import GuidedLinks
from pipeline.data.prepare import prepare
from pipeline.errors import UserError
from pipeline.model.config import ContextType, Impl
from pipeline.training.guided_alignment import guided_alignment_loss
from pipeline.training.trainer import Trainer


def links_of(rows: list[list[tuple[int, int]]]) -> GuidedLinks:
    offsets = np.cumsum([0] + [len(r) for r in rows])
    flat = np.array([link for r in rows for link in r], dtype=np.int32).reshape(-1, 2)
    return GuidedLinks(offsets, flat)


def test_targets_spread_each_target_piece_over_its_linked_source_pieces():
    links = links_of([[(0, 0), (1, 0), (2, 1)], [], [(1, 2)]])
    t = links.targets([0, 2, 1], src_len=4, tgt_len=3)  # rows 0, 2, 1 of the corpus
    assert t.shape == (3, 3, 4)
    np.testing.assert_allclose(t[0, 0], [0.5, 0.5, 0, 0])  # target piece 0 linked to source pieces 0 and 1
    np.testing.assert_allclose(t[0, 1], [0, 0, 1, 0])
    assert t[0, 2].sum() == 0  # no link: no target, no loss
    np.testing.assert_allclose(t[1, 2], [0, 1, 0, 0])
    assert t[2].sum() == 0  # a sentence without links


def test_the_loss_is_the_cross_entropy_of_linked_rows_only():
    attention = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])
    targets = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    assert guided_alignment_loss(attention, targets).item() == pytest.approx(-np.log(0.75), rel=1e-5)
    with pytest.raises(ValueError, match="differ"):
        guided_alignment_loss(attention, targets[:, :1])


def diagonal_links(train) -> GuidedLinks:
    """A link from each target piece to the source piece at the same position (a learnable rule)."""
    rows = []
    for s, t in zip(train["src_ids"], train["tgt_ids"]):
        rows.append([(min(i, len(s) - 1), i) for i in range(len(t))])
    return links_of(rows)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guided")
    cfg = tiny_train_config(tmp, write_slice(tmp / "m30k"))
    data = prepare(cfg.data, cfg.tokenizer, cfg.batch)
    data.guided = diagonal_links(data.splits["train"])
    return tmp, data


def guided_loss_after(tmp, data, weight: float, name: str, **model) -> float:
    """The mean guided cross-entropy per linked row on the first batches after 60 updates (lr 0.01:
    the tiny model must learn positions in a few steps)."""
    cfg = tiny_train_config(tmp / name, data_dir=tmp / "m30k", max_steps=60, eval_every=1000, log_every=10, lr=0.01)
    cfg.train.guided_alignment = dataclasses.replace(cfg.train.guided_alignment, weight=weight)
    cfg.model = dataclasses.replace(cfg.model, **model)
    trainer = Trainer(cfg, data)
    trainer.run()
    trainer.model.eval()
    total, rows = 0.0, 0
    with torch.no_grad():
        for idx in trainer.sampler.batches(0)[:4]:
            batch, _ = trainer._batch(idx)
            guide = data.guided.targets(idx.tolist(), batch.src.size(1), batch.tgt_out.size(1))
            _, attn = trainer.model(batch.src, batch.src_lens, batch.tgt_in)
            total += float(guided_alignment_loss(attn, guide))
            rows += int((guide.sum(-1) > 0).sum())
    return total / rows


def test_guided_training_pulls_the_attention_towards_the_links(prepared):
    tmp, data = prepared
    free, guided = guided_loss_after(tmp, data, 0.0, "free"), guided_loss_after(tmp, data, 3.0, "guided")
    assert guided < 0.8 * free, (guided, free)


def test_a_user_defined_attention_on_the_reference_path_is_guided_too(prepared, monkeypatch):
    tmp, data = prepared
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    user = dict(attention_class="cosine_attention.CosineAttention", impl=Impl.reference)
    free = guided_loss_after(tmp, data, 0.0, "user-free", **user)
    guided = guided_loss_after(tmp, data, 1.0, "user-guided", **user)
    assert guided < 0.8 * free, (guided, free)


def test_guiding_a_model_without_attention_is_one_line(prepared):
    tmp, data = prepared
    cfg = tiny_train_config(tmp / "baseline", tmp / "m30k", ContextType.fixed, max_steps=2)
    cfg.train.guided_alignment = dataclasses.replace(cfg.train.guided_alignment, weight=1.0)
    with pytest.raises(UserError, match="guides attention, and model=baseline has none"):
        Trainer(cfg, data)
