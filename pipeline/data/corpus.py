"""Parallel corpus loading through Hugging Face ``datasets``, normalised to ``src``/``tgt``.

Three sources, chosen by ``data.source``:

* ``multi30k``: the upstream raw layout ``{train,val,test_2016_flickr}.{lang}.gz``,
  looked up locally first (``data.local_dir``, ``$PIPELINE_MULTI30K_DIR``,
  ``data/multi30k/raw`` in the repo, ``../shared/data/multi30k/raw`` beside it) and
  only then on the Hub (``bentrevett/multi30k``, de/en only);
* ``files``: any local parallel text files, plain or ``.gz``, ``{prefix}.{lang}[.gz]``
  per split (``data.files.train=PREFIX``...);
* ``hub``: any Hub dataset id, with a ``translation`` dict column (wmt14, iwslt2017)
  or one column per language (``data.hub_src_column``/``hub_tgt_column``).

Local files are validated while they are read (line counts, UTF-8, NUL bytes, line
length) and every problem is a one-line :class:`UserError` naming file and line.
Datasets are built with ``Dataset.from_generator`` so they are cached as Arrow and
reused by fingerprint on the next run.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import sys
from pathlib import Path
from typing import Optional

import datasets
import numpy as np

from pipeline.config import DataConfig, Source
from pipeline.data.textfile import read_parallel
from pipeline.errors import UserError

SPLITS = ("train", "val", "test")
MULTI30K_FILES = {"train": "train", "val": "val", "test": "test_2016_flickr"}
# Multi30k's later test sets (WMT 2017 and 2018 multimodal tasks), evaluated by name when present
EXTRA_TEST_SETS = ("test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")
MULTI30K_HUB_ID = "bentrevett/multi30k"
MULTI30K_ENV = "PIPELINE_MULTI30K_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def column_array(ds: datasets.Dataset, name: str) -> np.ndarray:
    """One numeric column (e.g. ``src_len``) as a numpy array, read from Arrow in one call.

    ``np.asarray(ds[name])`` goes through datasets' lazy column row by row: about 30 s
    for 600k rows, i.e. minutes on a large corpus, where this takes milliseconds.  On a
    ``select``-ed dataset (train after filtering) the index mapping is applied here as a
    numpy take: datasets' own path turns it into a Python list of every row index and
    gathers row by row, 77 s and 4.5 GB of RSS for a 5M-row train split (0.1 s here).

    The read touches a page of every Arrow record batch (and the kernel maps a window
    around each), so the pages are handed back afterwards: see :func:`release_mapped_pages`.
    """
    values = ds.data.column(name).to_numpy()
    indices = getattr(ds, "_indices", None)  # datasets' index mapping (a one-column Arrow table), if any
    if indices is not None:
        values = values[indices.column(0).to_numpy()]
    elif values.base is not None:  # a zero-copy view of the mapping would keep faulting its pages back in
        values = values.copy()
    if len(values) != len(ds):  # a datasets version that keeps the mapping elsewhere: its own (slow) path
        values = ds.with_format("arrow")[name].to_numpy()
    release_mapped_pages(ds)
    return values


def release_mapped_pages(ds: datasets.Dataset, min_bytes: int = 64 << 20) -> int:
    """Unmap the pages of ``ds``'s memory-mapped Arrow files that this process has touched.

    Why: datasets memory-maps its cache files, and every page a read touches stays mapped,
    and counted in the process's RSS (as RssFile), for as long as the dataset is open.
    Reads are sparse but the kernel maps up to 64 KiB around each page fault
    (fault-around), so on a 5M-pair corpus opening the train split maps about 320 MB (one
    header per 1000-row record batch), reading the two length columns another 70 MB, and
    every training batch about 40 MB (its rows lie all over the file): 20 steps added
    0.8 GB, and an epoch would map the whole 3.7 GB file.

    ``madvise(MADV_DONTNEED)`` on a read-only file mapping only drops this process's page
    table entries: the pages stay in the page cache and the next read maps them again, so
    no data can be lost.  Only read-only mappings of ``ds``'s own cache files are touched.
    Files smaller than ``min_bytes`` together are left alone: they cannot hold more than
    that in RSS, and reading /proc/self/maps costs about 1 ms a call (the trainer calls
    this for every batch).  Returns the bytes of mapping advised; 0 where there is
    nothing to do or no Linux /proc.
    """
    paths = {os.path.realpath(f["filename"]) for f in ds.cache_files}
    if not paths or not sys.platform.startswith("linux"):
        return 0
    try:
        if sum(os.path.getsize(p) for p in paths) < min_bytes:
            return 0
    except OSError:
        return 0
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return 0
    advised = 0
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1] or fields[5] not in paths:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if _libc().madvise(start, end - start, mmap.MADV_DONTNEED) == 0:
            advised += end - start
    return advised


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.madvise.restype = ctypes.c_int
    return libc


def load_corpus(cfg: DataConfig) -> datasets.DatasetDict:
    """Load train/val/test as a DatasetDict with string columns ``src`` and ``tgt``."""
    if cfg.src_lang == cfg.tgt_lang:
        raise UserError(f"data.src_lang and data.tgt_lang are both '{cfg.src_lang}'; choose two languages")
    if cfg.source == Source.files:
        corpus = _load_local(_files_layout(cfg), cfg)
    elif cfg.source == Source.hub:
        corpus = _load_hub(cfg)
    else:
        corpus = _load_multi30k(cfg)
    for split, ds in corpus.items():
        if len(ds) == 0:
            raise UserError(f"the {split} split of corpus '{cfg.name}' is empty; check the data files")
    return corpus


def load_split(cfg: DataConfig, name: str) -> datasets.Dataset:
    """One split by name: train, val, test, or a further test set (``EXTRA_TEST_SETS``) where it exists.

    Only that split is read (an evaluation need not read the training corpus).  A further
    test set comes from the Multi30k raw folder (``NAME.{lang}[.gz]``), ``data.files.NAME``
    or ``data.hub_splits.NAME``; a missing one is a one-line error saying where it was looked for.
    """
    if cfg.src_lang == cfg.tgt_lang:
        raise UserError(f"data.src_lang and data.tgt_lang are both '{cfg.src_lang}'; choose two languages")
    if name in SPLITS and cfg.source != Source.multi30k:
        ds = load_corpus(cfg)[name]
    elif cfg.source == Source.files:
        ds = _dataset_from_files(*_pair(_named_prefix(cfg, name), cfg), cfg)
    elif cfg.source == Source.hub:
        ds = _load_hub_split(cfg, name)
    else:
        ds = _load_multi30k_split(cfg, name)
    if len(ds) == 0:
        raise UserError(f"the {name} split of corpus '{cfg.name}' is empty; check the data files")
    return ds


def available_test_sets(cfg: DataConfig) -> list[str]:
    """``test`` and each further test set whose files (or hub split) are there for this language pair."""
    found = ["test"]
    for name in EXTRA_TEST_SETS:
        try:
            if cfg.source == Source.files:
                _pair(_named_prefix(cfg, name), cfg)
            elif cfg.source == Source.hub:
                if name not in cfg.hub_splits:
                    continue
            else:
                _multi30k_prefix(cfg, name)
        except UserError:
            continue
        found.append(name)
    return found


def _named_prefix(cfg: DataConfig, name: str) -> Path:
    prefix = cfg.files.get(name)
    if not prefix:
        raise UserError(
            f"test set {name}: data.files has no prefix for it; set data.files.{name}=PATH_PREFIX "
            f"so that PATH_PREFIX.{cfg.src_lang} and PATH_PREFIX.{cfg.tgt_lang} (or .gz) exist"
        )
    return Path(prefix)


def _multi30k_prefix(cfg: DataConfig, name: str) -> Path:
    root = find_multi30k_dir(cfg)
    if root is None:
        looked = ", ".join(str(p) for p in multi30k_candidates(cfg))
        raise UserError(f"Multi30k not found locally (looked in {looked}); run scripts/fetch_multi30k.sh")
    prefix = root / MULTI30K_FILES.get(name, name)
    for lang in (cfg.src_lang, cfg.tgt_lang):
        if not any(Path(f"{prefix}.{lang}{gz}").is_file() for gz in ("", ".gz")):
            raise UserError(
                f"test set {name} is not in {root}: no {prefix.name}.{lang}[.gz]; add the file (Multi30k's "
                "data/task1/raw) or choose split=val|test"
            )
    return prefix


def _load_multi30k_split(cfg: DataConfig, name: str) -> datasets.Dataset:
    if name in SPLITS and find_multi30k_dir(cfg) is None:
        return _load_multi30k(cfg)[name]  # the Hub copy of train/val/test when nothing is local
    return _dataset_from_files(*_pair(_multi30k_prefix(cfg, name), cfg), cfg)


def _pair(prefix: Path, cfg: DataConfig) -> tuple[Path, Path]:
    return resolve_file(prefix, cfg.src_lang), resolve_file(prefix, cfg.tgt_lang)


# ---------------------------------------------------------------- local text files


def find_multi30k_dir(cfg: DataConfig) -> Optional[Path]:
    """The first candidate directory holding the Multi30k raw files, or None.

    A ``data.local_dir`` given explicitly must hold them: silently falling back to
    another copy would hide a typo in the path.
    """
    if cfg.local_dir and not (Path(cfg.local_dir).is_dir() and any(Path(cfg.local_dir).glob("train.*"))):
        raise UserError(
            f"data.local_dir={cfg.local_dir} holds no Multi30k files (train.<lang>.gz, val.<lang>.gz, "
            "test_2016_flickr.<lang>.gz); fix the path or leave data.local_dir unset to search the default places"
        )
    for cand in multi30k_candidates(cfg):
        if cand.is_dir() and any(cand.glob("train.*")):
            return cand
    return None


def multi30k_candidates(cfg: DataConfig) -> list[Path]:
    cands = []
    if cfg.local_dir:
        cands.append(Path(cfg.local_dir))
    if os.environ.get(MULTI30K_ENV):
        cands.append(Path(os.environ[MULTI30K_ENV]))
    cands += [REPO_ROOT / "data" / "multi30k" / "raw", REPO_ROOT.parent / "shared" / "data" / "multi30k" / "raw"]
    return cands


def _load_multi30k(cfg: DataConfig) -> datasets.DatasetDict:
    root = find_multi30k_dir(cfg)
    if root is not None:
        layout = {split: root / MULTI30K_FILES[split] for split in SPLITS}
        return _load_local(layout, cfg)
    if {cfg.src_lang, cfg.tgt_lang} <= {"de", "en"}:
        hub_cfg = DataConfig(
            name=cfg.name,
            source=Source.hub,
            src_lang=cfg.src_lang,
            tgt_lang=cfg.tgt_lang,
            hub_id=MULTI30K_HUB_ID,
            cache_dir=cfg.cache_dir,
        )
        try:
            return _load_hub(hub_cfg)
        except UserError:
            pass
    looked = ", ".join(str(p) for p in multi30k_candidates(cfg))
    raise UserError(
        f"Multi30k not found: looked in {looked} and on the Hub ({MULTI30K_HUB_ID}, de/en only); "
        f"run scripts/fetch_multi30k.sh or set data.local_dir (or ${MULTI30K_ENV}) to a folder with "
        "train.{lang}.gz, val.{lang}.gz, test_2016_flickr.{lang}.gz"
    )


def _files_layout(cfg: DataConfig) -> dict[str, Path]:
    missing = [s for s in SPLITS if not cfg.files.get(s)]
    if missing:
        raise UserError(
            f"data.files has no prefix for split(s) {', '.join(missing)}; set data.files.<split>=PATH_PREFIX "
            f"so that PATH_PREFIX.{cfg.src_lang} and PATH_PREFIX.{cfg.tgt_lang} (or .gz) exist"
        )
    return {split: Path(cfg.files[split]) for split in SPLITS}


def resolve_file(prefix: Path, lang: str) -> Path:
    """``prefix.lang`` or ``prefix.lang.gz``; a UserError listing what exists otherwise."""
    for cand in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if cand.is_file():
            return cand
    siblings = sorted(p.name for p in prefix.parent.glob(f"{prefix.name}.*")) if prefix.parent.is_dir() else []
    langs = sorted({n[len(prefix.name) + 1 :].removesuffix(".gz") for n in siblings})
    have = f"languages found for {prefix.name}: {', '.join(langs)}" if langs else f"no files {prefix}.*"
    raise UserError(f"missing file {prefix}.{lang}[.gz] for language '{lang}' ({have}); check data.src_lang/tgt_lang")


def _load_local(layout: dict[str, Path], cfg: DataConfig) -> datasets.DatasetDict:
    return datasets.DatasetDict(
        {split: _dataset_from_files(*_pair(prefix, cfg), cfg) for split, prefix in layout.items()}
    )


def _file_identity(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _dataset_from_files(src: Path, tgt: Path, cfg: DataConfig) -> datasets.Dataset:
    kwargs = {
        "src_path": str(src),
        "tgt_path": str(tgt),
        "max_line_bytes": cfg.max_line_bytes,
        # Only used for the fingerprint: a changed file gets a new Arrow cache.  A string,
        # because datasets treats list-valued gen_kwargs as shards.
        "identity": repr([_file_identity(src), _file_identity(tgt)]),
    }
    try:
        return datasets.Dataset.from_generator(
            read_parallel, gen_kwargs=kwargs, cache_dir=str(Path(cfg.cache_dir) / "datasets")
        )
    except datasets.exceptions.DatasetGenerationError as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise


# ---------------------------------------------------------------- Hugging Face Hub


def _load_hub(cfg: DataConfig) -> datasets.DatasetDict:  # pragma: no cover - needs network
    return normalise_hub(_hub_raw(cfg), cfg)


def _hub_raw(cfg: DataConfig) -> datasets.DatasetDict:  # pragma: no cover - needs network
    if not cfg.hub_id:
        raise UserError("data.source=hub needs data.hub_id (e.g. bentrevett/multi30k or wmt14)")
    try:
        return datasets.load_dataset(cfg.hub_id, cfg.hub_config, cache_dir=str(Path(cfg.cache_dir) / "hub"))
    except Exception as err:  # network, auth, unknown id: all user-fixable
        raise UserError(
            f"could not load '{cfg.hub_id}' from the Hugging Face Hub: {str(err).splitlines()[0]}"
        ) from None


def _load_hub_split(cfg: DataConfig, name: str) -> datasets.Dataset:  # pragma: no cover - needs network
    if name in SPLITS:
        return _load_hub(cfg)[name]
    if name not in cfg.hub_splits:
        raise UserError(f"test set {name}: set data.hub_splits.{name} to the name of that split in {cfg.hub_id}")
    raw = _hub_raw(cfg)
    if cfg.hub_splits[name] not in raw:
        raise UserError(
            f"split '{cfg.hub_splits[name]}' not in {cfg.hub_id} (has: {', '.join(raw)}); set data.hub_splits.{name}"
        )
    return normalise_columns(raw[cfg.hub_splits[name]], cfg)


def normalise_hub(raw: datasets.DatasetDict, cfg: DataConfig) -> datasets.DatasetDict:
    """Map a Hub DatasetDict's splits and columns to train/val/test with ``src``/``tgt``."""
    names = {**DEFAULT_HUB_SPLITS, **cfg.hub_splits}
    out = {}
    for split in SPLITS:
        if names[split] not in raw:
            raise UserError(
                f"split '{names[split]}' not in {cfg.hub_id} (has: {', '.join(raw)}); set data.hub_splits.{split}"
            )
        out[split] = normalise_columns(raw[names[split]], cfg)
    return datasets.DatasetDict(out)


def normalise_columns(ds: datasets.Dataset, cfg: DataConfig) -> datasets.Dataset:
    """``translation`` dicts or per-language columns -> string columns ``src``, ``tgt``."""
    src_col = cfg.hub_src_column or cfg.src_lang
    tgt_col = cfg.hub_tgt_column or cfg.tgt_lang
    if "translation" in ds.column_names and src_col not in ds.column_names:
        langs = set(ds[0]["translation"]) if len(ds) else set()
        for lang in (cfg.src_lang, cfg.tgt_lang):
            if lang not in langs:
                raise UserError(
                    f"language '{lang}' not in {cfg.hub_id}'s translation column (has: {', '.join(sorted(langs))})"
                )

        def pick(batch: dict) -> dict:
            return {
                "src": [t[cfg.src_lang] for t in batch["translation"]],
                "tgt": [t[cfg.tgt_lang] for t in batch["translation"]],
            }

        return ds.map(pick, batched=True, remove_columns=ds.column_names)
    for key, col in (("hub_src_column", src_col), ("hub_tgt_column", tgt_col)):
        if col not in ds.column_names:
            raise UserError(f"column '{col}' not in {cfg.hub_id} (has: {', '.join(ds.column_names)}); set data.{key}")
    ds = ds.select_columns([src_col, tgt_col])
    return ds.rename_columns({src_col: "src", tgt_col: "tgt"}) if (src_col, tgt_col) != ("src", "tgt") else ds
