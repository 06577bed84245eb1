"""Load, validate, filter and encode a corpus once; everything downstream reads the cache.

``prepare(data_cfg, tok_cfg)`` is what ``python -m pipeline.prepare`` runs and what
training calls first.  The sentencepiece model is cached by a hash of its training
text and options, and the encoded splits by an explicit fingerprint of (corpus,
tokenizer), so a second call with the same inputs does no work and says so.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

from pipeline.config import BatchConfig, DataConfig, EflomalConfig, TokenizerConfig
from pipeline.data.batching import BucketBatchSampler, padding_fraction
from pipeline.data.corpus import SPLITS, column_array, load_corpus, release_mapped_pages
from pipeline.data.guided_links import GuidedLinks, guided_links
from pipeline.data.tokenizer import UNK_ID, SentencePiece, Tokenizer, build_tokenizer
from pipeline.errors import UserError

log = logging.getLogger(__name__)

DROP_REASONS = ("empty", "too_long", "ratio")


@dataclass
class PrepareStats:
    pairs: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    vocab_size: int = 0
    tokens: dict[str, dict[str, float]] = field(default_factory=dict)
    val_unk_percent: float = 0.0
    train_padding_percent: float | None = None
    padding_max_tokens: int = 0
    tokenizer_reused: bool = False
    encoding_reused: bool = False
    guided_links: int | None = None  # eflomal links of the train split, when guided alignment is on
    guided_links_reused: bool = False
    seconds: float = 0.0

    def table(self) -> str:
        rows = ["split   pairs   src mean/max   tgt mean/max"]
        for split in SPLITS:
            t = self.tokens[split]
            rows.append(
                f"{split:<6}{self.pairs[split]:>7}   {t['src_mean']:>6.1f}/{int(t['src_max']):<5}"
                f"  {t['tgt_mean']:>6.1f}/{int(t['tgt_max']):<5}"
            )
        dropped = ", ".join(f"{k}={v}" for k, v in self.dropped.items())
        rows.append(f"dropped from train: {sum(self.dropped.values())} ({dropped})")
        rows.append(f"vocabulary size: {self.vocab_size}   unknown pieces on val: {self.val_unk_percent:.3f}%")
        if self.train_padding_percent is not None:
            rows.append(
                f"padding in train batches of {self.padding_max_tokens} tokens: {self.train_padding_percent:.1f}%"
            )
        if self.guided_links is not None:
            how = "reused" if self.guided_links_reused else "computed by eflomal"
            rows.append(f"guided-alignment links of train: {self.guided_links:,} ({how})")
        cache = "reused" if self.tokenizer_reused and self.encoding_reused else "built"
        rows.append(
            f"cache: {cache} (tokenizer {'reused' if self.tokenizer_reused else 'trained'}, "
            f"encoding {'reused' if self.encoding_reused else 'computed'}) in {self.seconds:.1f}s"
        )
        return "\n".join(rows)


@dataclass
class PreparedData:
    """Encoded splits with columns src, tgt, src_ids, tgt_ids; train is filtered."""

    splits: datasets.DatasetDict
    tokenizer: Tokenizer
    stats: PrepareStats
    fingerprint: str
    guided: GuidedLinks | None = None  # subword links of the train rows (train.guided_alignment.weight > 0)


class _Encoder:
    """Picklable batch encoder for ``datasets.map`` (also with ``num_proc > 1``)."""

    def __init__(self, src_bytes: bytes, tgt_bytes: bytes) -> None:
        self.src_bytes, self.tgt_bytes = src_bytes, tgt_bytes
        self._sp = None

    def __call__(self, batch: dict) -> dict:
        if self._sp is None:
            src = SentencePiece(self.src_bytes)
            self._sp = (src, src if self.tgt_bytes == self.src_bytes else SentencePiece(self.tgt_bytes))
        src_ids = self._sp[0].encode(batch["src"])
        tgt_ids = self._sp[1].encode(batch["tgt"])
        return {
            "src_ids": src_ids,
            "tgt_ids": tgt_ids,
            "src_len": [len(s) for s in src_ids],
            "tgt_len": [len(t) for t in tgt_ids],
        }

    def __getstate__(self) -> dict:
        return {"src_bytes": self.src_bytes, "tgt_bytes": self.tgt_bytes, "_sp": None}


def prepare(
    data_cfg: DataConfig,
    tok_cfg: TokenizerConfig,
    batch_cfg: BatchConfig | None = None,
    guided: EflomalConfig | None = None,
) -> PreparedData:
    """Load, train/reuse the tokenizer, encode (cached), filter train; return data + stats.

    With ``batch_cfg`` the stats also report the padding of train batches at that budget; with
    ``guided``, eflomal's subword links of the filtered train split are computed (or read from the cache).
    """
    t0 = time.perf_counter()
    corpus = load_corpus(data_cfg)
    cache = Path(data_cfg.cache_dir)
    train = corpus["train"]
    tokenizer, tok_reused = build_tokenizer(TrainText(train, "src"), TrainText(train, "tgt"), tok_cfg, cache)
    encoded, enc_reused = _encode_all(corpus, tokenizer, cache, data_cfg.num_proc)
    encoded["train"], dropped = filter_train(encoded["train"], data_cfg.max_len, data_cfg.max_ratio)
    if len(encoded["train"]) == 0:
        reasons = ", ".join(f"{v} {k}" for k, v in dropped.items() if v)
        raise UserError(
            f"the filters dropped every train pair ({reasons}; data.max_len={data_cfg.max_len}, "
            f"data.max_ratio={data_cfg.max_ratio:g}); raise data.max_len or data.max_ratio, or check the train files"
        )
    stats = _stats(encoded, tokenizer, dropped)
    stats.tokenizer_reused, stats.encoding_reused = tok_reused, enc_reused
    if batch_cfg is not None:
        stats.padding_max_tokens = batch_cfg.max_tokens
        stats.train_padding_percent = 100.0 * train_padding(encoded["train"], batch_cfg)
    links = None
    if guided is not None:
        links, stats.guided_links_reused = guided_links(encoded["train"], guided, cache)
        stats.guided_links = int(len(links.links))
    stats.seconds = time.perf_counter() - t0
    fp = hashlib.sha256("".join(encoded[s]._fingerprint for s in SPLITS).encode()).hexdigest()[:16]
    return PreparedData(encoded, tokenizer, stats, fp, links)


@dataclass
class TrainText:
    """One side of the train split's non-empty pairs, streamed from Arrow in batches (re-iterable).

    Holding a large corpus as Python strings would cost several times its size in memory;
    this keeps the tokenizer's input at one batch at a time, and hands the pages of the
    memory-mapped file back after each batch: at 5M pairs they would stay in RSS, ~320 MB
    mapped by opening the corpus and ~180 MB more for the 1M lines the tokenizer reads.
    """

    ds: datasets.Dataset
    side: str
    batch_size: int = 10_000

    def __iter__(self) -> Iterator[str]:
        for batch in self.ds.iter(batch_size=self.batch_size):
            release_mapped_pages(self.ds)
            for s, t in zip(batch["src"], batch["tgt"]):
                if s.strip() and t.strip():
                    yield s if self.side == "src" else t


def _encode_all(corpus: datasets.DatasetDict, tok: Tokenizer, cache: Path, num_proc: int) -> tuple:
    tok_key = hashlib.sha256(tok.src.model_bytes + (b"" if tok.joint else tok.tgt.model_bytes)).hexdigest()[:16]
    out, reused = {}, True
    encoder = _Encoder(tok.src.model_bytes, tok.tgt.model_bytes)
    (cache / "encoded").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        ds = corpus[split]
        fp = hashlib.sha256(f"{ds._fingerprint}-{tok_key}".encode()).hexdigest()[:16]
        path = cache / "encoded" / f"{split}-{fp}.arrow"
        if path.exists() and not _intact(path, len(ds)):
            log.warning("cached encoding %s is damaged (truncated or replaced); encoding %s again", path, split)
            path.unlink()
        reused &= path.exists()
        out[split] = ds.map(
            encoder,
            batched=True,
            batch_size=2000,
            num_proc=num_proc if num_proc > 1 else None,
            cache_file_name=str(path),
            new_fingerprint=fp,
            desc=f"encode {split}",
        )
    return datasets.DatasetDict(out), reused


def _intact(path: Path, rows: int) -> bool:
    """Whether the cached Arrow file ``path`` opens and holds ``rows`` encoded rows.

    ``datasets`` trusts a cache file by its name alone, and a truncated one ends in a pyarrow
    traceback; the cache is derived data, so a damaged file is rebuilt rather than refused.
    """
    try:
        cached = datasets.Dataset.from_file(str(path))
    except (OSError, ValueError, pa.ArrowException):
        return False
    return len(cached) == rows and {"src_ids", "tgt_ids", "src_len", "tgt_len"} <= set(cached.column_names)


def filter_train(ds: datasets.Dataset, max_len: int, max_ratio: float) -> tuple[datasets.Dataset, dict[str, int]]:
    """Drop pairs that are empty, longer than ``max_len`` pieces, or too unbalanced.

    Each pair is counted under the first reason that applies, in the order of
    ``DROP_REASONS``.  Only the train split is ever filtered.
    """
    s = column_array(ds, "src_len").astype(np.int64)
    t = column_array(ds, "tgt_len").astype(np.int64)
    empty = (s == 0) | (t == 0)
    too_long = ~empty & (np.maximum(s, t) > max_len)
    ratio = ~empty & ~too_long & (np.maximum(s, t) > max_ratio * np.minimum(s, t))
    keep = ~(empty | too_long | ratio)
    dropped = {"empty": int(empty.sum()), "too_long": int(too_long.sum()), "ratio": int(ratio.sum())}
    if keep.all():
        return ds, dropped
    return ds.select(np.flatnonzero(keep)), dropped


def train_padding(train: datasets.Dataset, batch_cfg: BatchConfig) -> float:
    """Padded positions as a fraction of all positions in one epoch of bucketed train batches."""
    src, tgt = column_array(train, "src_len"), column_array(train, "tgt_len")
    sampler = BucketBatchSampler(src, tgt, batch_cfg.max_tokens, batch_cfg.max_sentences, seed=0)
    return padding_fraction(sampler.batches(0), src, tgt)


def _stats(encoded: datasets.DatasetDict, tok: Tokenizer, dropped: dict[str, int]) -> PrepareStats:
    stats = PrepareStats(dropped=dropped, vocab_size=len(tok.tgt) if tok.joint else len(tok.src) + len(tok.tgt))
    for split in SPLITS:
        ds = encoded[split]
        s = column_array(ds, "src_len")
        t = column_array(ds, "tgt_len")
        stats.pairs[split] = len(ds)
        stats.tokens[split] = {
            "src_mean": float(s.mean()),
            "src_max": int(s.max()),
            "tgt_mean": float(t.mean()),
            "tgt_max": int(t.max()),
        }
    stats.val_unk_percent = _unk_percent(encoded["val"]["src_ids"][:] + encoded["val"]["tgt_ids"][:])
    return stats


def _unk_percent(seqs: list[list[int]]) -> float:
    total = sum(len(s) for s in seqs)
    unk = sum(s.count(UNK_ID) for s in seqs)
    return 100.0 * unk / total if total else 0.0
