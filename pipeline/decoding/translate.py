"""Translate text with a checkpoint: ``python -m pipeline.translate checkpoint=PATH < in > out``.

Also the library function that :mod:`pipeline.evaluation.evaluate` and :mod:`pipeline.alignment.align` use,
so that every command turns text into translations the same way: sentencepiece
encode, batched search over length-sorted batches, detokenize.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

import torch

from pipeline.config import DecodeConfig, Precision, Quantize, TranslateAppConfig
from pipeline.data.textfile import read_lines
from pipeline.decoding.search import Hypothesis, decode_sequences
from pipeline.errors import UserError
from pipeline.fast.quantize import quantize_int8
from pipeline.model.config import Impl
from pipeline.runtime.hardware import resolve_device
from pipeline.runtime.precision import autocast_for, use_bf16
from pipeline.training.checkpoint import Restored, restore

log = logging.getLogger(__name__)


@dataclass
class Translations:
    texts: list[str]  # detokenized, in input order
    hyps: list[Hypothesis]  # tokens, score and (attention model) attention of each
    src_ids: list[list[int]]  # the encoded sources
    seconds: float  # decoding time (encode + search + detokenize)


def load_model(
    checkpoint: str,
    device: str,
    threads: int | None,
    impl: Impl | str = Impl.auto,
    quantize: Quantize | str = Quantize.none,
) -> Restored:
    """The checkpoint's model and tokenizer on the requested device, with the threads and ``impl`` asked
    for; with ``quantize=int8`` its Linear layers and RNN cells in int8 (pipeline/fast/quantize.py)."""
    if threads:
        torch.set_num_threads(threads)
    restored = restore(checkpoint, resolve_device(device), impl)
    if Quantize(quantize) is Quantize.int8:
        names = quantize_int8(restored.model, restored.device)
        log.info("decode.quantize=int8: %d modules in int8 (%s)", len(names), ", ".join(names))
    return restored


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


def translate(cfg: TranslateAppConfig) -> None:
    """Read sentences from ``cfg.input`` or stdin, write translations to stdout."""
    texts = read_lines(cfg.input) if cfg.input else [line.rstrip("\r\n") for line in sys.stdin]
    restored = load_model(cfg.checkpoint, cfg.device, cfg.threads, cfg.impl, cfg.decode.quantize)
    bf16 = decode_in_bf16(cfg.precision, cfg.decode.quantize, restored.device)
    result = translate_texts(restored, texts, cfg.decode, bf16)
    sys.stdout.write("".join(f"{t}\n" for t in result.texts))
    sys.stdout.flush()
