"""Translate text with a checkpoint: ``python -m pipeline.translate checkpoint=PATH < in > out``.

Also the library function that :mod:`pipeline.evaluation.evaluate` and :mod:`pipeline.alignment.align` use,
so that every command turns text into translations the same way: sentencepiece
encode, batched search over length-sorted batches, detokenize.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import torch

from pipeline.config import AttentionOutput, DecodeConfig, Precision, Quantize, TranslateAppConfig
from pipeline.data.textfile import read_lines
from pipeline.decoding.ensemble import Ensemble
from pipeline.decoding.search import Hypothesis, decode_sequences
from pipeline.decoding.stream import one_line, waiting_batches
from pipeline.errors import UserError
from pipeline.fast.quantize import quantize_int8
from pipeline.model.config import Impl
from pipeline.runtime.hardware import resolve_device
from pipeline.runtime.precision import autocast_for, use_bf16
from pipeline.training.checkpoint import Restored, restore

log = logging.getLogger(__name__)
EOS_PIECE = "</s>"  # how attention records and plots label the EOS row and column


@dataclass
class Translations:
    texts: list[str]  # detokenized, in input order
    hyps: list[Hypothesis]  # tokens, score and (attention model) attention of each
    src_ids: list[list[int]]  # the encoded sources
    seconds: float  # decoding time (encode + search + detokenize)


def checkpoint_paths(checkpoint: str | Sequence[str]) -> list[str]:
    """``checkpoint=PATH`` or ``checkpoint=[A,B,...]`` (an ensemble) as a list of paths."""
    paths = [checkpoint] if isinstance(checkpoint, str) else [str(p) for p in checkpoint]
    if not paths:
        raise UserError("checkpoint=[] is empty; give one checkpoint, or a list of them for an ensemble")
    return paths


def load_model(
    checkpoint: str | Sequence[str],
    device: str,
    threads: int | None,
    impl: Impl | str = Impl.auto,
    quantize: Quantize | str = Quantize.none,
    weights: str = "auto",
) -> Restored:
    """The checkpoint's model and tokenizer on the requested device, with the threads and ``impl`` asked
    for; with ``quantize=int8`` its Linear layers and RNN cells in int8 (pipeline/fast/quantize.py).

    A list of checkpoints gives an :class:`~pipeline.decoding.ensemble.Ensemble` (their tokenizers
    must be the same); the returned metadata are the first member's, and ``members`` holds each.
    """
    if threads:
        torch.set_num_threads(threads)
    paths = checkpoint_paths(checkpoint)
    members = [_load_one(path, resolve_device(device), impl, quantize, weights) for path in paths]
    if len(members) == 1:
        return members[0]
    for member in members[1:]:
        check_same_vocabulary(members[0], member)
    return replace(members[0], model=Ensemble([m.model for m in members]), members=members)


def _load_one(path: str, device: torch.device, impl: Impl | str, quantize: Quantize | str, weights: str) -> Restored:
    restored = restore(path, device, impl, weights)
    if Quantize(quantize) is Quantize.int8:
        names = quantize_int8(restored.model, restored.device)
        log.info("decode.quantize=int8: %d modules in int8 (%s)", len(names), ", ".join(names))
    return restored


def checkpoint_tag(restored: Restored, weights: str = "auto") -> str:
    """What to add to a result's name so that no other checkpoint's or weights' results are overwritten:
    ``.ensemble2``, ``.average-last5`` (an averaged checkpoint's file name), ``.ema``/``.model`` when
    the weights were chosen explicitly; "" for a plain checkpoint with its own weights."""
    tag = f".ensemble{len(restored.members)}" if restored.members else ""
    if not restored.members and restored.averaged is not None:
        tag += f".{restored.path.stem}"
    weights = getattr(weights, "value", weights)
    return tag + ("" if weights == "auto" else f".{weights}")


def checkpoint_names(checkpoint: str | Sequence[str]) -> str | list[str]:
    """The resolved path (or, for an ensemble, paths) of ``checkpoint``, for result files."""
    paths = [str(Path(p).resolve()) for p in checkpoint_paths(checkpoint)]
    return paths[0] if len(paths) == 1 else paths


def check_same_vocabulary(first: Restored, other: Restored) -> None:
    """Ensemble members must read and write the same pieces: same language pair and sentencepiece models."""
    for key in ("src_lang", "tgt_lang"):
        a, b = first.config["data"].get(key), other.config["data"].get(key)
        if a != b:
            raise UserError(
                f"checkpoint {other.path} translates with data.{key}={b}, {first.path} with {a}; "
                "ensemble checkpoints of one language pair"
            )
    for side in ("src", "tgt"):
        a, b = getattr(first.tokenizer, side), getattr(other.tokenizer, side)
        if len(a) != len(b):
            raise UserError(
                f"checkpoint {other.path} has a {side} vocabulary of {len(b)} pieces, {first.path} one of {len(a)}; "
                "ensemble checkpoints trained with the same tokenizer (same data and tokenizer.* settings)"
            )
        if a.model_bytes != b.model_bytes:
            raise UserError(
                f"checkpoint {other.path} has another {side} sentencepiece model than {first.path} (same size, "
                "other pieces); ensemble checkpoints trained with the same tokenizer (same data and settings)"
            )


def decode_in_bf16(precision: Precision | str, quantize: Quantize | str, device: torch.device) -> bool:
    """Whether decoding runs under bf16 autocast: ``precision`` on ``device``, except that int8
    decoding computes in int8 and float32 (``precision=auto`` then means fp32)."""
    if Quantize(quantize) is Quantize.none:
        return use_bf16(precision, device)
    if Precision(precision) is Precision.bf16:
        raise UserError(
            "decode.quantize=int8 multiplies in int8 with float32 activations and does not combine with "
            "precision=bf16; set precision=fp32 (or auto), or drop decode.quantize"
        )
    return False


def translate_texts(restored: Restored, texts: list[str], cfg: DecodeConfig, bf16: bool = False) -> Translations:
    """Translate ``texts`` in order with the search of ``cfg``."""
    t0 = time.perf_counter()
    src_ids = restored.tokenizer.src.encode(texts)
    device = next(restored.model.parameters()).device
    with autocast_for(device, bf16):
        hyps = decode_sequences(restored.model, src_ids, cfg, top_k=restored.top_log_probs)
    out = restored.tokenizer.tgt.decode([h.tokens for h in hyps])  # type: ignore[union-attr]
    return Translations(out, hyps, src_ids, time.perf_counter() - t0)  # type: ignore[arg-type]


def translate_lines(restored: Restored, lines: list[str], cfg: DecodeConfig, bf16: bool = False) -> Translations:
    """Like :func:`translate_texts`, but an empty (or all-blank) line stays empty: it is not decoded,
    and its hypothesis is None."""
    todo = [i for i, line in enumerate(lines) if line.strip()]
    done = translate_texts(restored, [lines[i] for i in todo], cfg, bf16)
    texts, hyps, src_ids = [""] * len(lines), [None] * len(lines), [[] for _ in lines]
    for i, text, hyp, ids in zip(todo, done.texts, done.hyps, done.src_ids):
        texts[i], hyps[i], src_ids[i] = text, hyp, ids
    return Translations(texts, hyps, src_ids, done.seconds)  # type: ignore[arg-type]


def attention_record(line: int, source: str, result: Translations, i: int, restored: Restored) -> dict:
    """The JSON Lines record of ``translate attention=jsonl`` for input line ``line`` (1-based):
    pieces with their EOS, weights [target piece + EOS][source piece + EOS] (null without attention)."""
    hyp, tok = result.hyps[i], restored.tokenizer
    if hyp is None:
        return {"line": line, "src": source, "translation": "", "src_pieces": [], "tgt_pieces": [], "weights": None}
    weights = None if hyp.attention is None else [[round(w, 5) for w in row] for row in hyp.attention.tolist()]
    return {
        "line": line,
        "src": source,
        "translation": result.texts[i],
        "src_pieces": tok.src.id_to_piece(result.src_ids[i]) + [EOS_PIECE],
        "tgt_pieces": tok.tgt.id_to_piece(hyp.tokens) + [EOS_PIECE],  # type: ignore[union-attr]
        "weights": weights,
        "log_prob": hyp.log_prob,
    }


def json_line(record: dict) -> str:
    """One JSON Lines line, UTF-8 kept readable but the three characters that ``str.splitlines`` (not
    JSON) takes for line breaks escaped, so that every reader sees one record per line."""
    text = json.dumps(record, ensure_ascii=False)
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


def _open_attention_file(cfg: TranslateAppConfig) -> TextIO | None:
    if AttentionOutput(cfg.attention) is AttentionOutput.none:
        return None
    try:
        return open(cfg.attention_file, "w", encoding="utf-8")  # noqa: SIM115 - written while lines stream
    except OSError as err:
        raise UserError(
            f"attention_file={cfg.attention_file} cannot be written ({err.strerror}); give a writable path"
        ) from None


def translate(cfg: TranslateAppConfig) -> None:
    """Translate ``cfg.input`` (a file) or standard input (``input=-`` or none) to standard output.

    Standard input is streamed (:mod:`pipeline.decoding.stream`): each batch of the lines
    waiting is translated and written, flushed, before the next is read.  Either way one
    output line per input line, an empty line staying empty.
    """
    from_file = cfg.input not in (None, "-")
    texts = read_lines(cfg.input) if from_file else None  # a bad file fails before the model loads
    attention = _open_attention_file(cfg)
    restored = load_model(cfg.checkpoint, cfg.device, cfg.threads, cfg.impl, cfg.decode.quantize, cfg.weights)
    bf16 = decode_in_bf16(cfg.precision, cfg.decode.quantize, restored.device)
    batches = [texts] if texts is not None else waiting_batches(sys.stdin.buffer, cfg.stream_max_lines)
    done = 0
    try:
        for batch in batches:
            result = translate_lines(restored, batch, cfg.decode, bf16)
            sys.stdout.write("".join(f"{one_line(t)}\n" for t in result.texts))
            sys.stdout.flush()
            if attention is not None:
                for i, source in enumerate(batch):
                    record = attention_record(done + i + 1, source, result, i, restored)
                    attention.write(json_line(record))
                attention.flush()
            done += len(batch)
    finally:
        if attention is not None:
            attention.close()
