"""SentencePiece subword models: train once (cached by content hash), load, encode, decode.

The special ids are fixed here and nowhere else, so that batching, models and
search agree on them and a checkpoint's embedded model bytes always match.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from pipeline.config import TokenizerConfig, as_plain_dict
from pipeline.errors import UserError

log = logging.getLogger(__name__)

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3


def _spm_options(cfg: TokenizerConfig) -> dict:
    return dict(
        model_type=cfg.type.value,
        vocab_size=cfg.vocab_size,
        character_coverage=cfg.character_coverage,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        num_threads=cfg.num_threads,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        max_sentence_length=1 << 16,
        minloglevel=2,
    )


def train_model(sentences: Iterable[str], cfg: TokenizerConfig) -> bytes:
    """Train a sentencepiece model on ``sentences`` and return its serialized bytes.

    sentencepiece holds its training sentences in memory, so only the first
    ``cfg.train_sentences`` are used (0 = all): the bound that keeps a corpus larger than
    memory trainable.

    sentencepiece's "vocabulary too large" failure is translated into a
    :class:`UserError` naming ``tokenizer.vocab_size``.
    """
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=itertools.islice(sentences, cfg.train_sentences or None),
            model_writer=buf,
            **_spm_options(cfg),
        )
    except RuntimeError as err:
        msg = str(err)
        if "Vocabulary size" in msg or "vocab_size" in msg:
            hint = msg.split("Please set it to a value <= ")[-1].rstrip(".") if "<=" in msg else "a smaller value"
            raise UserError(
                f"tokenizer.vocab_size={cfg.vocab_size} is too large for this corpus; "
                f"set tokenizer.vocab_size to at most {hint}"
            ) from None
        raise
    return buf.getvalue()


def text_hash(parts: Iterable[str], cfg: TokenizerConfig, tag: str) -> str:
    """Cache key: the text sentencepiece is given and every option that changes the model.

    Only the first ``cfg.train_sentences`` lines are hashed, since only they reach the
    trainer, and the cap itself is not part of the key: a corpus smaller than the cap
    keeps its cached model when the cap changes.  ``num_threads`` is part of it:
    sentencepiece's unigram trainer gives (slightly) different models for different
    thread counts, each one deterministic.
    """
    h = hashlib.sha256()
    opts = {k: v for k, v in as_plain_dict(cfg).items() if k != "train_sentences"}
    h.update(json.dumps({"opts": opts, "tag": tag, "ids": [PAD_ID, UNK_ID, BOS_ID, EOS_ID]}, sort_keys=True).encode())
    for line in itertools.islice(parts, cfg.train_sentences or None):
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def train_or_load(sentences: Iterable[str], cfg: TokenizerConfig, cache_dir: Path, tag: str) -> tuple[bytes, bool]:
    """Return (model bytes, reused?) for a model trained on ``sentences`` (iterated twice: hash, train).

    The model is stored as ``cache_dir/spm/<hash>.model``, written atomically, so
    a second prepare with the same text and options reuses it.
    """
    key = text_hash(sentences, cfg, tag)
    path = Path(cache_dir) / "spm" / f"{tag}-{key}.model"
    if path.exists():
        blob = path.read_bytes()
        if _loads(blob):
            return blob, True
        log.warning("cached sentencepiece model %s is damaged (truncated or replaced); training it again", path)
    blob = train_model(sentences, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
    return blob, False


def _loads(blob: bytes) -> bool:
    """Whether sentencepiece can load ``blob`` (a cached model may have been damaged since it was written)."""
    try:
        spm.SentencePieceProcessor(model_proto=blob)
    except RuntimeError:
        return False
    return True


class SentencePiece:
    """One sentencepiece model: encode text to ids, decode ids to detokenized text."""

    def __init__(self, model_bytes: bytes) -> None:
        self.model_bytes = model_bytes
        self.sp = spm.SentencePieceProcessor(model_proto=model_bytes)
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise UserError("sentencepiece model has unexpected special ids; retrain it with this pipeline")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts, out_type=int)

    def encode_pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def encode_with_surfaces(self, texts: list[str]) -> list[tuple[list[int], list[str], list[str]]]:
        """``(ids, pieces, surfaces)`` per text: the surfaces are the input characters each piece covers.

        Plots label tokens with their surfaces, so that a character the vocabulary
        lacks shows as itself rather than as ``<unk>``.
        """
        out = []
        for proto in self.sp.encode(texts, return_type="proto"):
            ids = [p.id for p in proto.pieces]
            out.append((ids, self.id_to_piece(ids), [p.surface for p in proto.pieces]))
        return out

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self.sp.decode([[i for i in s if i > EOS_ID] for s in ids])

    def id_to_piece(self, ids: Sequence[int]) -> list[str]:
        return [self.sp.id_to_piece(int(i)) for i in ids]


@dataclass
class Tokenizer:
    """Source and target models; the same object twice when the vocabulary is joint."""

    src: SentencePiece
    tgt: SentencePiece

    @property
    def joint(self) -> bool:
        return self.src is self.tgt

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        names = {"joint": self.src} if self.joint else {"src": self.src, "tgt": self.tgt}
        for name, model in names.items():
            tmp = directory / f".{name}.model.tmp"
            tmp.write_bytes(model.model_bytes)
            os.replace(tmp, directory / f"{name}.model")

    def state(self) -> dict:
        """Bytes for a checkpoint: the tokenizer travels with the model."""
        return {"src": self.src.model_bytes, "tgt": None if self.joint else self.tgt.model_bytes}

    @classmethod
    def from_state(cls, state: dict) -> Tokenizer:
        src = SentencePiece(state["src"])
        return cls(src, src if state.get("tgt") is None else SentencePiece(state["tgt"]))


def build_tokenizer(
    train_src: Iterable[str], train_tgt: Iterable[str], cfg: TokenizerConfig, cache_dir: Path
) -> tuple[Tokenizer, bool]:
    """Train (or reuse) the models on the train split only; returns (tokenizer, reused?).

    The texts may be lists or re-iterable streams (prepare passes streams over the Arrow
    dataset, so a large corpus is never held as Python strings).
    """
    if cfg.joint:
        blob, reused = train_or_load(_Interleaved(train_src, train_tgt), cfg, cache_dir, "joint")
        model = SentencePiece(blob)
        return Tokenizer(model, model), reused
    src_blob, r1 = train_or_load(train_src, cfg, cache_dir, "src")
    tgt_blob, r2 = train_or_load(train_tgt, cfg, cache_dir, "tgt")
    return Tokenizer(SentencePiece(src_blob), SentencePiece(tgt_blob)), r1 and r2


@dataclass
class _Interleaved:
    """src_1, tgt_1, src_2, tgt_2, ...: re-iterable, lazy."""

    a: Iterable[str]
    b: Iterable[str]

    def __iter__(self) -> Iterator[str]:
        return (s for pair in zip(self.a, self.b) for s in pair)
