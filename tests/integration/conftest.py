"""Tiny trained checkpoints shared by the CLI tests (trained once per session, a few seconds each)."""

from __future__ import annotations

import gzip

import pytest
from tinydata import tiny_train_config, write_slice

from pipeline.config import ContextType
from pipeline.training.trainer import train


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """An attention checkpoint trained 8 steps on a 300-pair slice, plus the slice's test files."""
    tmp = tmp_path_factory.mktemp("eval")
    data = write_slice(tmp / "m30k")
    cfg = tiny_train_config(tmp, data, max_steps=8, eval_every=4)
    train(cfg)
    src, ref = tmp / "src.de", tmp / "ref.en.gz"
    with gzip.open(data / "test_2016_flickr.de.gz", "rt") as f:
        src.write_text(f.read())
    with gzip.open(data / "test_2016_flickr.en.gz", "rt") as f, gzip.open(ref, "wt") as g:
        g.write(f.read())
    return {"tmp": tmp, "ckpt": tmp / "run" / "checkpoints" / "last.pt", "src": src, "ref": ref, "data": data}


@pytest.fixture(scope="session")
def trained_baseline(tmp_path_factory, trained):
    """A no-attention checkpoint on the same slice (2 steps: only its kind matters)."""
    tmp = tmp_path_factory.mktemp("baseline")
    cfg = tiny_train_config(tmp, trained["data"], ContextType.fixed, max_steps=2, eval_every=2)
    train(cfg)
    return tmp / "run" / "checkpoints" / "last.pt"


@pytest.fixture(scope="session")
def trained_reverse(tmp_path_factory, trained):
    """An en->de attention checkpoint on the same slice: the other direction of ``trained``."""
    tmp = tmp_path_factory.mktemp("reverse")
    cfg = tiny_train_config(tmp, trained["data"], max_steps=4, eval_every=4)
    cfg.data.src_lang, cfg.data.tgt_lang = "en", "de"
    train(cfg)
    return tmp / "run" / "checkpoints" / "last.pt"
