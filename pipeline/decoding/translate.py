"""Translate text with a checkpoint: ``python -m pipeline.translate checkpoint=PATH < in > out``.

Also the library function that :mod:`pipeline.evaluation.evaluate` and :mod:`pipeline.alignment.align` use,
so that every command turns text into translations the same way: sentencepiece
encode, batched search over length-sorted batches, detokenize.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch

from pipeline.config import DecodeConfig, TranslateAppConfig
from pipeline.data.textfile import read_lines
from pipeline.decoding.search import Hypothesis, decode_sequences
from pipeline.model.config import Impl
from pipeline.runtime.hardware import resolve_device
from pipeline.runtime.precision import autocast_for, use_bf16
from pipeline.training.checkpoint import Restored, restore


@dataclass
class Translations:
    texts: list[str]  # detokenized, in input order
    hyps: list[Hypothesis]  # tokens, score and (attention model) attention of each
    src_ids: list[list[int]]  # the encoded sources
    seconds: float  # decoding time (encode + search + detokenize)


def load_model(checkpoint: str, device: str, threads: int | None, impl: Impl | str = Impl.auto) -> Restored:
    """The checkpoint's model and tokenizer on the requested device, with the threads and ``impl`` asked for."""
    if threads:
        torch.set_num_threads(threads)
    return restore(checkpoint, resolve_device(device), impl)


def translate_texts(restored: Restored, texts: list[str], cfg: DecodeConfig, bf16: bool = False) -> Translations:
    """Translate ``texts`` in order with the search of ``cfg``."""
    t0 = time.perf_counter()
    src_ids = restored.tokenizer.src.encode(texts)
    device = next(restored.model.parameters()).device
    with autocast_for(device, bf16):
        hyps = decode_sequences(restored.model, src_ids, cfg, top_k=restored.top_log_probs)
    out = restored.tokenizer.tgt.decode([h.tokens for h in hyps])  # type: ignore[union-attr]
    return Translations(out, hyps, src_ids, time.perf_counter() - t0)  # type: ignore[arg-type]


def translate(cfg: TranslateAppConfig) -> None:
    """Read sentences from ``cfg.input`` or stdin, write translations to stdout."""
    texts = read_lines(cfg.input) if cfg.input else [line.rstrip("\r\n") for line in sys.stdin]
    restored = load_model(cfg.checkpoint, cfg.device, cfg.threads, cfg.impl)
    result = translate_texts(restored, texts, cfg.decode, use_bf16(cfg.precision, restored.device))
    sys.stdout.write("".join(f"{t}\n" for t in result.texts))
    sys.stdout.flush()
