"""prepare() end to end on a small Multi30k slice, train-only filtering, and ``python -m pipeline.prepare``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from hydra import compose, initialize_config_dir

from pipeline.cli.app import CONF_DIR
from pipeline.config import DataConfig, Source, TokenizerConfig
from pipeline.data.prepare import DROP_REASONS, filter_train, prepare

REPO_ROOT = Path(__file__).resolve().parents[2]
SPLITS = ("train", "val", "test")
N = {"train": 200, "val": 40, "test": 40}
VOCAB = 300

# Pairs that prepare() must drop from train (and keep in val/test), by reason.
EMPTY = [("", "A dog runs through the grass."), ("Ein Hund rennt durch das Gras.", "")]
TOO_LONG = [("ein Hund " * 100, "a dog " * 100)]
RATIO = [("Ja.", "A man in a blue shirt is standing on a ladder and cleaning the windows of a tall building.")]
BAD = EMPTY + TOO_LONG + RATIO


@pytest.fixture
def corpus_dir(tmp_path, multi30k, write_lines) -> Path:
    """train/val/test.{de,en}: Multi30k lines followed by the BAD pairs."""
    root = tmp_path / "corp"
    root.mkdir()
    for split in SPLITS:
        de = multi30k(split, "de", N[split]) + [s for s, _ in BAD]
        en = multi30k(split, "en", N[split]) + [t for _, t in BAD]
        write_lines(root / f"{split}.de", de)
        write_lines(root / f"{split}.en", en)
    return root


def configs(root: Path, cache: Path) -> tuple[DataConfig, TokenizerConfig]:
    data = DataConfig(
        name="slice",
        source=Source.files,
        files={s: str(root / s) for s in SPLITS},
        max_len=100,
        max_ratio=3.0,
        cache_dir=str(cache),
    )
    return data, TokenizerConfig(vocab_size=VOCAB)


# ---------------------------------------------------------------- filtering


def test_filter_train_counts_each_pair_under_its_first_reason():
    lens = [(0, 5), (5, 0), (0, 0), (101, 50), (150, 10), (100, 100), (10, 30), (10, 31), (31, 10), (1, 1)]
    ds = datasets.Dataset.from_dict(
        {"row": list(range(len(lens))), "src_len": [s for s, _ in lens], "tgt_len": [t for _, t in lens]}
    )
    kept, dropped = filter_train(ds, max_len=100, max_ratio=3.0)
    assert tuple(dropped) == DROP_REASONS
    # (150, 10) is too long *and* unbalanced: counted once, as too_long
    assert dropped == {"empty": 3, "too_long": 2, "ratio": 2}
    # the limits themselves are allowed (max_len pieces, ratio exactly max_ratio); order is kept
    assert kept["row"][:] == [5, 6, 9]


def test_filter_train_keeps_everything_when_nothing_applies():
    ds = datasets.Dataset.from_dict({"src_len": [3, 4], "tgt_len": [4, 3]})
    kept, dropped = filter_train(ds, max_len=10, max_ratio=2.0)
    assert len(kept) == 2 and dropped == {"empty": 0, "too_long": 0, "ratio": 0}


def test_prepare_end_to_end_filters_train_only_and_reuses_caches(corpus_dir, tmp_path, multi30k, write_lines):
    data_cfg, tok_cfg = configs(corpus_dir, tmp_path / "cache")
    first = prepare(data_cfg, tok_cfg)
    stats = first.stats
    assert (stats.tokenizer_reused, stats.encoding_reused) == (False, False)
    assert stats.dropped == {"empty": len(EMPTY), "too_long": len(TOO_LONG), "ratio": len(RATIO)}
    # only the bad pairs left train; val and test are never filtered
    assert stats.pairs == {"train": N["train"], "val": N["val"] + len(BAD), "test": N["test"] + len(BAD)}
    assert first.splits["train"]["src"][:] == multi30k("train", "de", N["train"])
    assert first.splits["test"]["tgt"][-len(BAD) :] == [t for _, t in BAD]
    assert stats.vocab_size == VOCAB and len(first.tokenizer.src) == VOCAB
    # encoded columns agree with the tokenizer, sources and targets not swapped
    row = first.splits["val"][0]
    assert row["src"] == multi30k("val", "de", 1)[0]
    assert row["src_ids"] == first.tokenizer.src.encode([row["src"]])[0]
    assert row["tgt_len"] == len(row["tgt_ids"]) > 0
    assert first.tokenizer.tgt.decode([row["tgt_ids"]]) == [row["tgt"]]

    second = prepare(data_cfg, tok_cfg)
    assert (second.stats.tokenizer_reused, second.stats.encoding_reused) == (True, True)
    assert second.fingerprint == first.fingerprint
    assert second.stats.pairs == stats.pairs and second.stats.dropped == stats.dropped
    assert second.splits["train"]["src_ids"][:] == first.splits["train"]["src_ids"][:]
    assert "cache: reused" in second.stats.table()

    # The tokenizer is trained on train only: a changed val file re-encodes but keeps the tokenizer.
    write_lines(corpus_dir / "val.en", multi30k("val", "en", N["val"]) + ["changed"] * len(BAD))
    third = prepare(data_cfg, tok_cfg)
    assert (third.stats.tokenizer_reused, third.stats.encoding_reused) == (True, False)
    assert third.splits["val"]["tgt"][-1] == "changed"
    assert third.fingerprint != first.fingerprint


# ---------------------------------------------------------------- the CLI


def run_prepare(root: Path, cache: Path, *overrides: str, files_override: str = "") -> subprocess.CompletedProcess:
    """``python -m pipeline.prepare data=files ...`` from the repo root.

    Uses the documented ``data.files.<split>=PREFIX`` form.
    """
    cmd = [sys.executable, "-m", "pipeline.prepare", "data=files"]
    cmd += [f"{files_override}data.files.{s}={root / s}" for s in SPLITS]
    cmd += ["data.src_lang=de", "data.tgt_lang=en", f"data.cache_dir={cache}", f"tokenizer.vocab_size={VOCAB}"]
    cmd += list(overrides)
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert lines[-1] == errors[0], "the error is the last thing printed"
    assert "error:" not in proc.stdout
    return errors[0]


@pytest.mark.slow
def test_cli_prepares_and_prints_stats(corpus_dir, tmp_path):
    cache = tmp_path / "cache"
    proc = run_prepare(corpus_dir, cache)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for split in SPLITS:
        pairs = N[split] + (0 if split == "train" else len(BAD))
        assert re.search(rf"^{split}\s+{pairs}\s", proc.stdout, re.MULTILINE), proc.stdout
    assert "dropped from train: 4 (empty=2, too_long=1, ratio=1)" in proc.stdout
    assert "vocabulary size: 300" in proc.stdout
    assert list((cache / "spm").glob("joint-*.model")), "the tokenizer is cached under data.cache_dir"


@pytest.mark.slow
def test_cli_line_count_mismatch(corpus_dir, tmp_path, multi30k, write_lines):
    write_lines(corpus_dir / "train.en", multi30k("train", "en", 50))
    msg = assert_one_line_error(run_prepare(corpus_dir, tmp_path / "cache"))
    assert msg == (
        f"error: line counts differ: {corpus_dir / 'train.de'} has {N['train'] + len(BAD)} lines, "
        f"{corpus_dir / 'train.en'} has 50; the files must be line-aligned translations"
    )


@pytest.mark.slow
def test_cli_invalid_utf8(corpus_dir, tmp_path):
    path = corpus_dir / "val.de"
    lines = path.read_bytes().split(b"\n")
    lines[6] = "Ein Mädchen".encode("cp1252")
    path.write_bytes(b"\n".join(lines))
    msg = assert_one_line_error(run_prepare(corpus_dir, tmp_path / "cache"))
    assert msg.startswith(f"error: {path}:7: invalid UTF-8")


@pytest.mark.slow
def test_cli_unknown_language_lists_what_exists(corpus_dir, tmp_path):
    msg = assert_one_line_error(run_prepare(corpus_dir, tmp_path / "cache", "data.tgt_lang=fr"))
    assert f"{corpus_dir / 'train.fr'}" in msg
    assert "languages found for train: de, en" in msg


@pytest.mark.slow
def test_cli_vocab_size_too_large(corpus_dir, tmp_path):
    msg = assert_one_line_error(run_prepare(corpus_dir, tmp_path / "cache", "tokenizer.vocab_size=50000"))
    assert msg.startswith("error: tokenizer.vocab_size=50000 is too large")


def test_documented_files_override_composes(corpus_dir):
    """The command documented in conf/data/files.yaml: ``data=files data.files.train=PREFIX ...``."""
    overrides = ["data=files"] + [f"data.files.{s}={corpus_dir / s}" for s in SPLITS]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="prepare", overrides=overrides)
    assert dict(cfg.data.files) == {s: str(corpus_dir / s) for s in SPLITS}


@pytest.mark.slow
def test_cli_filters_that_drop_every_train_pair_are_one_line(corpus_dir, tmp_path):
    """Issue #34: a train split empty after filtering was a numpy traceback."""
    msg = assert_one_line_error(run_prepare(corpus_dir, tmp_path / "cache", "data.max_len=1"))
    assert "the filters dropped every train pair" in msg and "data.max_len=1" in msg and "raise data.max_len" in msg
