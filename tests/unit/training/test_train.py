"""Training: exact resume, checkpoints that rebuild the model alone, budgets, schedule."""

from __future__ import annotations

import copy
import dataclasses
import shutil

import pytest
import torch
from tinydata import tiny_train_config, write_slice

from pipeline.config import ContextType, EmaConfig
from pipeline.data.batching import collate
from pipeline.data.prepare import prepare
from pipeline.errors import UserError
from pipeline.training.checkpoint import load_checkpoint, restore
from pipeline.training.resume import check_resumable
from pipeline.training.schedule import PlateauWarmup
from pipeline.training.trainer import Trainer, train


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("m30k"))


def _final_params(run_dir) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize(("context", "ema"), [(ContextType.attention, 0.99), (ContextType.fixed, 0.0)])
def test_resume_is_bit_identical(tmp_path, slice_dir, context, ema):
    """Parameters, and with train.ema.decay the weight average too, equal an uninterrupted run's."""
    straight = tiny_train_config(tmp_path / "a", slice_dir, context, max_steps=20, ema=EmaConfig(decay=ema))
    train(straight)
    split = tiny_train_config(tmp_path / "b", slice_dir, context, max_steps=10, ema=EmaConfig(decay=ema))
    train(split)
    assert load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")["step"] == 10
    train(dataclasses.replace(split, train=dataclasses.replace(split.train, max_steps=20)))
    a, b = (load_checkpoint(tmp_path / d / "run" / "checkpoints" / "last.pt") for d in "ab")
    assert ("ema" in a) == (ema > 0)
    for weights in ("model", "ema") if ema else ("model",):
        assert a[weights].keys() == b[weights].keys()
        for key in a[weights]:
            assert torch.equal(a[weights][key], b[weights][key]), (weights, key)


def test_checkpoint_alone_rebuilds_the_model(tmp_path, slice_dir):
    cfg = tiny_train_config(tmp_path, slice_dir, max_steps=6, eval_every=3)
    trainer = Trainer(cfg)
    trainer.run()
    restored = restore(tmp_path / "run" / "checkpoints" / "last.pt")
    val = trainer.data.splits["val"]
    b = collate(val["src_ids"][:5], val["tgt_ids"][:5], list(range(5)))
    trainer.model.eval()
    with torch.no_grad():
        want, _ = trainer.model(b.src, b.src_lens, b.tgt_in)
        got, _ = restored.model(b.src, b.src_lens, b.tgt_in)
    assert torch.equal(want, got)
    assert restored.tokenizer.src.model_bytes == trainer.tokenizer.src.model_bytes
    assert restored.step == 6


def test_best_checkpoint_holds_the_best_bleu(tmp_path, slice_dir):
    cfg = tiny_train_config(tmp_path, slice_dir, max_steps=12, eval_every=3)
    summary = train(cfg)
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["step"] == summary["best_step"]
    assert best["progress"]["best_bleu"] == pytest.approx(summary["best_bleu"])


def test_rerun_of_a_finished_run_does_nothing_and_resume_checks_the_model(tmp_path, slice_dir):
    cfg = tiny_train_config(tmp_path, slice_dir, max_steps=4, eval_every=2)
    train(cfg)
    again = train(cfg)
    assert again["step"] == 4
    other = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, attention=dataclasses.replace(cfg.model.attention, dim=8))
    )
    with pytest.raises(UserError, match="different model"):
        train(other)
    # the tokenizer is compared by its model: a cap above the corpus size does not block a resume
    roomy = dataclasses.replace(cfg, tokenizer=dataclasses.replace(cfg.tokenizer, train_sentences=10**9))
    assert train(roomy)["step"] == 4
    other_vocab = dataclasses.replace(cfg, tokenizer=dataclasses.replace(cfg.tokenizer, vocab_size=280))
    with pytest.raises(UserError, match=r"different sentencepiece model \(tokenizer.vocab_size=300 vs 280 now\)"):
        train(other_vocab)


def test_unwritable_run_dir_is_a_user_error(tmp_path, slice_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = dataclasses.replace(tiny_train_config(tmp_path, slice_dir), run_dir=str(blocker / "run"))
    with pytest.raises(UserError, match="run_dir"):
        Trainer(cfg, data=None)


def test_full_disk_is_a_user_error_before_training(tmp_path, slice_dir, monkeypatch):
    cfg = tiny_train_config(tmp_path, slice_dir)
    full = shutil.disk_usage(tmp_path)._replace(free=1 << 20)  # 1 MB left
    monkeypatch.setattr("pipeline.training.trainer.shutil.disk_usage", lambda path: full)
    with pytest.raises(UserError, match=r"only 1 MB free .* lower train.keep_checkpoints"):
        Trainer(cfg, data=None)
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt"))


def test_loss_decreases_on_the_slice(tmp_path, slice_dir):
    cfg = tiny_train_config(tmp_path, slice_dir, max_steps=60, eval_every=1000, log_every=5, lr=3e-3)
    data = prepare(cfg.data, cfg.tokenizer, cfg.batch)
    train(cfg, data)
    import json

    losses = [
        json.loads(line)["loss"]
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5


def test_plateau_warmup_schedule():
    s = PlateauWarmup(peak=1e-3, warmup_steps=10, factor=0.5, patience=2, min_lr=3e-4)
    assert s.lr(5) == pytest.approx(5e-4) and s.lr(10) == pytest.approx(1e-3)
    assert not s.observe(10.0)
    assert not s.observe(9.0)
    assert s.observe(9.5)  # second validation without a new best: reduce
    assert s.peak == pytest.approx(5e-4)
    s.observe(1.0)
    s.observe(1.0)
    assert s.peak == pytest.approx(3e-4)  # floored at min_lr
    t = PlateauWarmup(1, 0, 0.5, 2, 0)
    t.load_state_dict(s.state_dict())
    assert t == s


def test_a_checkpoint_from_before_a_new_model_key_still_resumes(tmp_path, slice_dir):
    """A key added to the model schema later (here attention.placement) takes its default for an older checkpoint."""
    cfg = tiny_train_config(tmp_path, slice_dir, max_steps=2, eval_every=2)
    trainer = Trainer(cfg, data=None)
    current = {"config": trainer.config_dict, "tokenizer": trainer.tokenizer.state()}
    old = copy.deepcopy(current)
    del old["config"]["model"]["attention"]["placement"]
    check_resumable(old, current, tmp_path / "last.pt")
    old["config"]["model"]["attention"]["placement"] = "luong"
    with pytest.raises(UserError, match="different model"):
        check_resumable(old, current, tmp_path / "last.pt")


def test_validation_builds_no_autograd_graph(tmp_path, slice_dir):
    """Validation's forward passes hold no activations for a backward that never comes."""
    from pipeline.training.validation import teacher_forced_stats

    trainer = Trainer(tiny_train_config(tmp_path, slice_dir, max_steps=1))
    grad_seen = []
    trainer.model.register_forward_hook(lambda *_: grad_seen.append(torch.is_grad_enabled()))
    nll, _, _ = teacher_forced_stats(trainer.model, trainer.data.splits["val"], 512, torch.device("cpu"), False)
    assert grad_seen and not any(grad_seen) and nll > 0
