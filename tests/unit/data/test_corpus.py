"""Tests for pipeline.data.corpus: every source kind normalised to ``src``/``tgt``, and one-line validation errors."""

from __future__ import annotations

import gzip
import os
import re
import sys
from pathlib import Path

import datasets
import pytest

from pipeline.config import DataConfig, Source
from pipeline.data.corpus import (
    MULTI30K_ENV,
    REPO_ROOT,
    available_test_sets,
    column_array,
    find_multi30k_dir,
    load_corpus,
    load_split,
    normalise_columns,
    normalise_hub,
    release_mapped_pages,
)
from pipeline.data.textfile import read_lines
from pipeline.errors import UserError

SPLITS = ("train", "val", "test")
DE = ["Ein Hund läuft.", "Zwei Katzen schlafen.", "Ein Mann fährt Rad."]
EN = ["A dog runs.", "Two cats sleep.", "A man rides a bike."]


@pytest.fixture(autouse=True)
def _no_multi30k_env(monkeypatch):
    """A developer's $PIPELINE_MULTI30K_DIR must not change what these tests find."""
    monkeypatch.delenv(MULTI30K_ENV, raising=False)


def files_cfg(root: Path, tmp_path: Path, **kw) -> DataConfig:
    return DataConfig(
        name="tiny",
        source=Source.files,
        files={s: str(root / s) for s in SPLITS},
        cache_dir=str(tmp_path / "cache"),
        **kw,
    )


def make_corpus(root: Path, write_lines, src=DE, tgt=EN, langs=("de", "en"), ext="") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_lines(root / f"{split}.{langs[0]}{ext}", src)
        write_lines(root / f"{split}.{langs[1]}{ext}", tgt)
    return root


def user_error(cfg: DataConfig) -> str:
    with pytest.raises(UserError) as info:
        load_corpus(cfg)
    msg = str(info.value)
    assert "\n" not in msg, "a UserError must be one line"
    return msg


# ---------------------------------------------------------------- Hub column normalisation


def hub_dict(rows: dict[str, list], split_names=("train", "validation", "test")) -> datasets.DatasetDict:
    return datasets.DatasetDict({name: datasets.Dataset.from_dict(rows) for name in split_names})


def test_normalise_hub_translation_dicts_wmt14_style():
    raw = hub_dict({"translation": [{"de": d, "en": e} for d, e in zip(DE, EN)]})
    out = normalise_hub(raw, DataConfig(source=Source.hub, hub_id="wmt14", src_lang="de", tgt_lang="en"))
    assert set(out) == set(SPLITS)
    for split in SPLITS:
        assert out[split].column_names == ["src", "tgt"]
        assert out[split]["src"][:] == DE
        assert out[split]["tgt"][:] == EN
        assert out[split].features["src"].dtype == "string"
    # The other direction picks the other side of the same dicts.
    rev = normalise_hub(raw, DataConfig(source=Source.hub, hub_id="wmt14", src_lang="en", tgt_lang="de"))
    assert rev["train"]["src"][:] == EN and rev["train"]["tgt"][:] == DE


def test_normalise_hub_per_language_columns_multi30k_style():
    raw = hub_dict({"en": EN, "de": DE, "image_id": [1, 2, 3]})
    out = normalise_hub(raw, DataConfig(source=Source.hub, hub_id="bentrevett/multi30k", src_lang="de", tgt_lang="en"))
    for split in SPLITS:
        assert out[split].column_names == ["src", "tgt"]
        assert out[split]["src"][:] == DE
        assert out[split]["tgt"][:] == EN


def test_normalise_hub_split_names_and_explicit_columns():
    raw = hub_dict({"text_de": DE, "text_en": EN}, split_names=("train", "dev", "test"))
    cfg = DataConfig(
        source=Source.hub,
        hub_id="x/y",
        src_lang="de",
        tgt_lang="en",
        hub_splits={"val": "dev"},
        hub_src_column="text_de",
        hub_tgt_column="text_en",
    )
    out = normalise_hub(raw, cfg)
    assert out["val"]["src"][:] == DE and out["val"]["tgt"][:] == EN


def test_normalise_hub_missing_split_names_the_config_key():
    raw = hub_dict({"en": EN, "de": DE}, split_names=("train", "dev", "test"))
    match = r"split 'validation' not in x/y \(has: train, dev, test\).*data\.hub_splits\.val"
    with pytest.raises(UserError, match=match):
        normalise_hub(raw, DataConfig(source=Source.hub, hub_id="x/y"))


def test_normalise_columns_unknown_language_lists_what_exists():
    ds = datasets.Dataset.from_dict({"translation": [{"de": d, "en": e} for d, e in zip(DE, EN)]})
    with pytest.raises(UserError, match=r"language 'fr' not in wmt14's translation column \(has: de, en\)"):
        normalise_columns(ds, DataConfig(hub_id="wmt14", src_lang="fr", tgt_lang="en"))
    ds = datasets.Dataset.from_dict({"en": EN, "de": DE})
    with pytest.raises(UserError, match=r"column 'cs' not in m30k \(has: en, de\); set data\.hub_tgt_column"):
        normalise_columns(ds, DataConfig(hub_id="m30k", src_lang="de", tgt_lang="cs"))


# ---------------------------------------------------------------- local parallel files


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_files_source_plain_and_gz(tmp_path, write_lines, ext):
    root = make_corpus(tmp_path / "corp", write_lines, ext=ext)
    corpus = load_corpus(files_cfg(root, tmp_path))
    assert set(corpus) == set(SPLITS)
    for split in SPLITS:
        assert corpus[split].column_names == ["src", "tgt"]
        assert corpus[split]["src"][:] == DE
        assert corpus[split]["tgt"][:] == EN


def test_files_source_mixed_gz_and_crlf(tmp_path, write_lines):
    """src gzipped, tgt plain with Windows line endings: no '\\r' leaks into the text."""
    root = tmp_path / "corp"
    root.mkdir()
    for split in SPLITS:
        write_lines(root / f"{split}.de.gz", DE)
        (root / f"{split}.en").write_bytes("".join(f"{e}\r\n" for e in EN).encode())
    corpus = load_corpus(files_cfg(root, tmp_path))
    assert corpus["train"]["src"][:] == DE
    assert corpus["train"]["tgt"][:] == EN


def test_files_source_changed_file_is_reread(tmp_path, write_lines):
    """The Arrow cache must not serve stale text after a data file changes."""
    root = make_corpus(tmp_path / "corp", write_lines)
    cfg = files_cfg(root, tmp_path)
    assert load_corpus(cfg)["train"]["tgt"][:] == EN
    changed = ["A black dog runs fast.", "Two cats sleep.", "A man rides a bike."]
    write_lines(root / "train.en", changed)
    corpus = load_corpus(cfg)
    assert corpus["train"]["tgt"][:] == changed
    assert corpus["val"]["tgt"][:] == EN


def test_files_source_requires_every_split(tmp_path, write_lines):
    root = make_corpus(tmp_path / "corp", write_lines)
    cfg = files_cfg(root, tmp_path)
    del cfg.files["test"]
    msg = user_error(cfg)
    assert "data.files" in msg and "test" in msg


# ---------------------------------------------------------------- Multi30k raw layout


def write_multi30k(root: Path, write_lines, langs: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for upstream in ("train", "val", "test_2016_flickr"):
        for lang, lines in langs.items():
            write_lines(root / f"{upstream}.{lang}.gz", [f"{upstream} {line}" for line in lines])
    return root


def test_multi30k_local_dir(tmp_path, write_lines):
    root = write_multi30k(tmp_path / "raw", write_lines, {"de": DE, "en": EN})
    cfg = DataConfig(local_dir=str(root), cache_dir=str(tmp_path / "cache"))
    assert find_multi30k_dir(cfg) == root
    corpus = load_corpus(cfg)
    assert corpus["train"]["src"][:] == [f"train {d}" for d in DE]
    assert corpus["val"]["tgt"][:] == [f"val {e}" for e in EN]
    # the test split is the upstream test_2016_flickr file
    assert corpus["test"]["src"][:] == [f"test_2016_flickr {d}" for d in DE]


def test_later_test_sets_are_read_by_name_when_present_and_named_when_not(tmp_path, write_lines):
    root = write_multi30k(tmp_path / "raw", write_lines, {"de": DE, "en": EN})
    write_lines(root / "test_2017_flickr.de.gz", [f"2017 {d}" for d in DE])
    write_lines(root / "test_2017_flickr.en", [f"2017 {e}" for e in EN])  # plain or gzipped
    write_lines(root / "test_2018_flickr.de.gz", DE)  # no English side: not a test set of de-en
    cfg = DataConfig(local_dir=str(root), cache_dir=str(tmp_path / "cache"))
    assert available_test_sets(cfg) == ["test", "test_2017_flickr"]
    assert load_split(cfg, "test_2017_flickr")["tgt"][:] == [f"2017 {e}" for e in EN]
    assert load_split(cfg, "test")["src"][:] == [f"test_2016_flickr {d}" for d in DE]
    with pytest.raises(UserError, match=r"test set test_2018_flickr is not in .*raw: no test_2018_flickr.en\[.gz\]"):
        load_split(cfg, "test_2018_flickr")
    files = DataConfig(source=Source.files, files={"train": str(root / "train")}, cache_dir=str(tmp_path / "c2"))
    with pytest.raises(UserError, match="set data.files.test_2017_mscoco=PATH_PREFIX"):
        load_split(files, "test_2017_mscoco")
    files.files["test_2017_mscoco"] = str(root / "test_2017_flickr")
    assert load_split(files, "test_2017_mscoco")["src"][:] == [f"2017 {d}" for d in DE]


def test_multi30k_local_dir_fr_cs(tmp_path, write_lines):
    fr = ["Un chien court.", "Deux chats dorment.", "Un homme fait du vélo."]
    cs = ["Pes běží.", "Dvě kočky spí.", "Muž jede na kole."]
    root = write_multi30k(tmp_path / "raw", write_lines, {"de": DE, "en": EN, "fr": fr, "cs": cs})
    corpus = load_corpus(DataConfig(local_dir=str(root), src_lang="fr", tgt_lang="cs", cache_dir=str(tmp_path / "c")))
    assert corpus["train"]["src"][:] == [f"train {s}" for s in fr]
    assert corpus["train"]["tgt"][:] == [f"train {s}" for s in cs]


def test_multi30k_unknown_language_lists_what_exists(tmp_path, write_lines):
    root = write_multi30k(tmp_path / "raw", write_lines, {"de": DE, "en": EN})
    msg = user_error(DataConfig(local_dir=str(root), src_lang="de", tgt_lang="fr", cache_dir=str(tmp_path / "c")))
    assert str(root / "train.fr") in msg
    assert "languages found for train: de, en" in msg


def test_multi30k_env_dir_is_used(tmp_path, write_lines, monkeypatch):
    root = write_multi30k(tmp_path / "raw", write_lines, {"de": DE, "en": EN})
    monkeypatch.setenv(MULTI30K_ENV, str(root))
    cfg = DataConfig(cache_dir=str(tmp_path / "c"))
    assert find_multi30k_dir(cfg) == root
    assert load_corpus(cfg)["train"]["src"][:] == [f"train {d}" for d in DE]


def test_multi30k_default_lookup_finds_shared_dir(tmp_path, multi30k):
    if any((REPO_ROOT / "data" / "multi30k" / "raw").glob("train.*")):
        pytest.skip("data/multi30k/raw in the repo comes first in the lookup")
    shared = REPO_ROOT.parent / "shared" / "data" / "multi30k" / "raw"
    cfg = DataConfig(src_lang="fr", tgt_lang="cs", cache_dir=str(tmp_path / "cache"))
    assert find_multi30k_dir(cfg) == shared
    corpus = load_corpus(cfg)
    assert {s: len(corpus[s]) for s in SPLITS} == {"train": 29000, "val": 1014, "test": 1000}
    assert corpus["train"]["src"][:3] == multi30k("train", "fr", 3)
    assert corpus["test"]["tgt"][:3] == multi30k("test", "cs", 3)


# ---------------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    ("n_src", "n_tgt"),
    [(4, 3), (6, 3), (3, 4), (3, 7)],
    ids=["src+1", "src+3", "tgt+1", "tgt+4"],
)
def test_line_count_mismatch_names_both_counts(tmp_path, write_lines, n_src, n_tgt):
    root = make_corpus(tmp_path / "corp", write_lines)
    write_lines(root / "val.de", [f"Satz {i}" for i in range(n_src)])
    write_lines(root / "val.en", [f"sentence {i}" for i in range(n_tgt)])
    msg = user_error(files_cfg(root, tmp_path))
    assert msg.startswith("line counts differ")
    assert f"{root / 'val.de'} has {n_src} lines" in msg
    assert f"{root / 'val.en'} has {n_tgt}" in msg


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_invalid_utf8_names_file_and_line(tmp_path, write_lines, ext):
    root = make_corpus(tmp_path / "corp", write_lines, ext=ext)
    bad = b"Zwei Katzen.\n" + "Ein Hund läuft.\n".encode("latin-1") + b"ok\n"  # latin-1 umlaut on line 2
    path = root / f"train.de{ext}"
    path.write_bytes(gzip.compress(bad) if ext else bad)
    msg = user_error(files_cfg(root, tmp_path))
    assert msg.startswith(f"{path}:2: invalid UTF-8")


def test_nul_byte_and_overlong_line_name_file_and_line(tmp_path, write_lines):
    root = make_corpus(tmp_path / "corp", write_lines)
    (root / "test.en").write_bytes(b"A dog.\nTwo\x00cats.\nA man.\n")
    msg = user_error(files_cfg(root, tmp_path))
    assert msg.startswith(f"{root / 'test.en'}:2: NUL byte")

    make_corpus(root, write_lines)
    write_lines(root / "train.en", ["a", "b " * 40, "c"])
    msg = user_error(files_cfg(root, tmp_path, max_line_bytes=50))
    assert msg.startswith(f"{root / 'train.en'}:2: line of 81 bytes exceeds data.max_line_bytes=50")


def test_truncated_gz_names_file(tmp_path, write_lines):
    root = make_corpus(tmp_path / "corp", write_lines, ext=".gz")
    path = root / "train.en.gz"
    blob = gzip.compress("".join(f"line {i} {i * 7919 % 1000}\n" for i in range(3000)).encode())
    path.write_bytes(blob[: len(blob) // 2])
    msg = user_error(files_cfg(root, tmp_path))
    assert msg.startswith(f"{path}:")
    assert "truncated or corrupt" in msg


def test_missing_file_lists_languages_found(tmp_path, write_lines):
    root = make_corpus(tmp_path / "corp", write_lines)
    (root / "val.en").unlink()
    msg = user_error(files_cfg(root, tmp_path))
    assert f"missing file {root / 'val.en'}" in msg
    assert "languages found for val: de" in msg


def test_missing_directory_says_no_files(tmp_path, write_lines):
    root = make_corpus(tmp_path / "corp", write_lines)
    cfg = files_cfg(root, tmp_path)
    cfg.files["test"] = str(tmp_path / "nowhere" / "test")
    msg = user_error(cfg)
    assert f"no files {tmp_path / 'nowhere' / 'test'}.*" in msg


def test_unknown_language_lists_languages_found(tmp_path, write_lines):
    root = make_corpus(tmp_path / "corp", write_lines)
    write_lines(root / "train.fr", DE)
    msg = user_error(files_cfg(root, tmp_path, tgt_lang="cs"))
    assert "language 'cs'" in msg
    assert "languages found for train: de, en, fr" in msg


def test_empty_corpus(tmp_path, write_lines):
    root = make_corpus(tmp_path / "corp", write_lines)
    (root / "val.de").write_bytes(b"")
    (root / "val.en").write_bytes(b"")
    msg = user_error(files_cfg(root, tmp_path))
    assert str(root / "val.de") in msg and "empty" in msg


def test_same_language_twice(tmp_path, write_lines):
    root = make_corpus(tmp_path / "corp", write_lines)
    msg = user_error(files_cfg(root, tmp_path, tgt_lang="de"))
    assert "data.src_lang and data.tgt_lang are both 'de'" in msg


def test_read_lines_plain_gz_and_errors(tmp_path, write_lines):
    assert read_lines(write_lines(tmp_path / "a.en.gz", EN)) == EN
    assert read_lines(write_lines(tmp_path / "a.en", EN)) == EN
    bad = tmp_path / "bad.de"
    bad.write_bytes(b"ok\nok\n\xc3\x28\n")
    with pytest.raises(UserError, match="^" + re.escape(f"{bad}:3: invalid UTF-8")):
        read_lines(bad)
    with pytest.raises(UserError, match="missing file"):
        read_lines(tmp_path / "absent.de")


def test_explicit_local_dir_without_files_is_an_error_not_a_silent_fallback(tmp_path):
    empty = tmp_path / "typo"
    empty.mkdir()
    with pytest.raises(UserError, match=r"data.local_dir=.*typo holds no Multi30k files"):
        load_corpus(DataConfig(source=Source.multi30k, local_dir=str(empty), cache_dir=str(tmp_path / "cache")))


def test_column_array_matches_the_rows_also_after_select():
    """Length columns are read straight from Arrow, honouring a filter's index mapping."""
    ds = datasets.Dataset.from_dict({"src_len": [5, 7, 2, 9], "tgt_len": [1, 2, 3, 4]})
    picked = ds.select([3, 0, 2])
    assert column_array(ds, "src_len").tolist() == [5, 7, 2, 9]
    assert column_array(picked, "src_len").tolist() == [9, 5, 2]
    assert column_array(picked, "tgt_len").tolist() == [row["tgt_len"] for row in picked]


def mapped_rss_kb(path: Path) -> int:
    """This process's resident pages of ``path``'s mappings (Rss: in /proc/self/smaps), in kB."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = len(head) == 6 and head[5] == str(path)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps; a no-op elsewhere")
def test_release_mapped_pages_unmaps_what_reads_touched_and_the_data_stays_readable(tmp_path):
    """Pages of a memory-mapped Arrow file leave the process's RSS; reads after that see the same rows."""
    n = 60_000
    datasets.Dataset.from_dict({"src_len": list(range(n)), "src": [f"sentence {i}" for i in range(n)]}).save_to_disk(
        tmp_path / "ds"
    )
    mapped = datasets.load_from_disk(str(tmp_path / "ds"))
    (arrow,) = (Path(os.path.realpath(f["filename"])) for f in mapped.cache_files)
    picked = mapped.select(range(0, n, 7))
    rows = picked[:]
    assert mapped_rss_kb(arrow) > 0
    assert release_mapped_pages(mapped) == 0, "files under min_bytes are left alone"
    assert release_mapped_pages(picked, min_bytes=0) >= arrow.stat().st_size
    assert mapped_rss_kb(arrow) == 0
    assert picked[:] == rows
    assert column_array(picked, "src_len").tolist() == list(range(0, n, 7))
    assert release_mapped_pages(datasets.Dataset.from_dict({"a": [1]}), min_bytes=0) == 0, "nothing mapped"
