"""Tiny corpora and configs shared by the tests: a few hundred Multi30k pairs, tiny models."""

from __future__ import annotations

import gzip
from pathlib import Path

from pipeline.config import (
    BatchConfig,
    ContextType,
    DataConfig,
    DecodeConfig,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    Source,
    TokenizerConfig,
    TrainAppConfig,
    TrainConfig,
)

REPO = Path(__file__).resolve().parents[1]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k" / "raw"
SPLIT_FILES = {"train": "train", "val": "val", "test": "test_2016_flickr"}


# The tiny model and budget of tiny_train_config, as Hydra overrides for the CLI tests.
TINY_OVERRIDES = [
    "tokenizer.vocab_size=300",
    "batch.max_tokens=400",
    "model.emb_dim=16",
    "model.encoder.hidden_dim=16",
    "model.encoder.layers=1",
    "model.decoder.hidden_dim=32",
    "model.decoder.readout_dim=16",
    "model.attention.dim=24",
    "train.max_steps=6",
    "train.eval_every=3",
    "train.log_every=2",
    "train.eval_max_sentences=10",
    "train.progress=false",
    "train.threads=1",
]


def write_slice(folder: Path, n_train: int = 300, n_eval: int = 40, langs=("de", "en")) -> Path:
    """Multi30k-layout gz files holding the first lines of each split; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, stem in SPLIT_FILES.items():
        n = n_train if split == "train" else n_eval
        for lang in langs:
            with gzip.open(MULTI30K / f"{stem}.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(n)]
            with gzip.open(folder / f"{stem}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.writelines(lines)
    return folder


def tiny_model(context: ContextType = ContextType.attention, name: str = "bahdanau") -> ModelConfig:
    return ModelConfig(
        name=name,
        context=context,
        emb_dim=16,
        dropout=0.1,
        encoder=EncoderConfig(hidden_dim=16, layers=1, dropout=0.0),
        decoder=DecoderConfig(hidden_dim=32, readout_dim=16, tie_embeddings=True),
        attention=ModelConfig().attention.__class__(dim=24),
    )


def tiny_train_config(
    tmp: Path, data_dir: Path, context: ContextType = ContextType.attention, **train
) -> TrainAppConfig:
    """A TrainAppConfig on the slice in ``data_dir`` with a tiny model; ``train`` overrides TrainConfig."""
    tcfg = dict(
        seed=7,
        max_steps=20,
        max_epochs=None,
        eval_every=10,
        log_every=5,
        eval_max_sentences=10,
        progress=False,
        threads=1,
    )
    tcfg.update(train)
    return TrainAppConfig(
        data=DataConfig(source=Source.multi30k, local_dir=str(data_dir), cache_dir=str(tmp / "cache")),
        tokenizer=TokenizerConfig(vocab_size=300),
        batch=BatchConfig(max_tokens=400, max_sentences=64),
        model=tiny_model(context, "bahdanau" if context == ContextType.attention else "baseline"),
        train=TrainConfig(**tcfg),
        decode=DecodeConfig(max_len=30),
        run_dir=str(tmp / "run"),
    )
