"""Validation during training: loss/perplexity, greedy BLEU/chrF, attention diagnostics.

Loss is the plain token-level cross-entropy (no label smoothing), so perplexity is
comparable across runs that smooth differently.  BLEU and chrF come from sacrebleu
on detokenized greedy output.  For the attention model two diagnostics follow how
sharp the alignments get: the mean entropy of α_i over real target positions, and
the mean attention mass on the source EOS (a model that has not learnt to align
parks its attention there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch

from pipeline.config import DecodeConfig, Quantize
from pipeline.data.batching import BucketBatchSampler, collate
from pipeline.data.corpus import column_array
from pipeline.data.tokenizer import PAD_ID, Tokenizer
from pipeline.decoding.search import Hypothesis, TopK, decode_sequences
from pipeline.errors import UserError
from pipeline.evaluation.metrics import score_corpus
from pipeline.runtime.precision import autocast_for


@dataclass
class ValResult:
    loss: float
    ppl: float
    bleu: float
    chrf: float
    signatures: dict
    n_sentences: int
    attn_entropy: float | None = None
    attn_eos_mass: float | None = None
    examples: list[dict] = field(default_factory=list)
    heatmap: tuple[list[str], list[str], np.ndarray] | None = None  # (src pieces, hyp pieces, weights)

    def scalars(self) -> dict:
        out = {
            "loss": self.loss,
            "ppl": self.ppl,
            "bleu": self.bleu,
            "chrf": self.chrf,
            "n_sentences": self.n_sentences,
        }
        if self.attn_entropy is not None:
            out.update(attn_entropy=self.attn_entropy, attn_eos_mass=self.attn_eos_mass)
        return out


def reject_quantized_validation(cfg: DecodeConfig) -> None:
    """Validation decodes the model being trained, in its training precision: int8 is for a finished checkpoint."""
    if Quantize(cfg.quantize) is not Quantize.none:
        raise UserError(
            f"decode.quantize={Quantize(cfg.quantize).value} is for evaluate and translate of a trained checkpoint; "
            "training validates the float model: drop decode.quantize from the train command"
        )


@torch.no_grad()
def teacher_forced_stats(
    model: torch.nn.Module, val: datasets.Dataset, max_tokens: int, device: torch.device, bf16: bool
) -> tuple[float, float | None, float | None]:
    """(mean token NLL, mean attention entropy, mean attention mass on source EOS) over ``val``."""
    sampler = BucketBatchSampler(column_array(val, "src_len"), column_array(val, "tgt_len"), max_tokens, shuffle=False)
    nll = tokens = 0.0
    ent_sum = eos_sum = rows = 0.0
    for idx in sampler.batches(0):
        ex = val[idx.tolist()]
        b = collate(ex["src_ids"], ex["tgt_ids"], idx.tolist()).to(device)
        with autocast_for(device, bf16):
            loss_sum, attn = model(b.src, b.src_lens, b.tgt_in, b.tgt_out)
        nll += float(loss_sum)
        real = b.tgt_out != PAD_ID
        tokens += float(real.sum())
        if attn is not None:
            a = attn.float()
            ent = -(a * torch.log(a.clamp_min(1e-12))).sum(-1)  # [B, T]; padded sources have α = 0
            eos = a.gather(2, (b.src_lens - 1).view(-1, 1, 1).expand(-1, a.size(1), 1)).squeeze(2)
            ent_sum += float(ent[real].sum())
            eos_sum += float(eos[real].sum())
            rows += float(real.sum())
    has_attn = rows > 0
    return nll / max(tokens, 1.0), ent_sum / rows if has_attn else None, eos_sum / rows if has_attn else None


def validate(
    model: torch.nn.Module,
    val: datasets.Dataset,
    tokenizer: Tokenizer,
    decode_cfg: DecodeConfig,
    max_tokens: int,
    max_sentences: int | None,
    n_examples: int,
    device: torch.device,
    bf16: bool,
    top_k: TopK | None = None,
) -> ValResult:
    """Score ``model`` on the validation split (the model is left in eval mode); ``top_k``: the
    searches' top-k function (:mod:`pipeline.decoding.search`)."""
    model.eval()
    loss, entropy, eos_mass = teacher_forced_stats(model, val, max_tokens, device, bf16)
    n = len(val) if max_sentences is None else min(max_sentences, len(val))
    subset = val.select(range(n))
    with autocast_for(device, bf16):
        hyps: list[Hypothesis] = decode_sequences(model, list(subset["src_ids"]), decode_cfg, top_k=top_k)  # type: ignore[assignment]
    texts = tokenizer.tgt.decode([h.tokens for h in hyps])
    refs = list(subset["tgt"])
    scores = score_corpus(texts, refs, names=("bleu", "chrf"))
    examples = [{"src": subset[i]["src"], "ref": refs[i], "hyp": texts[i]} for i in range(min(n_examples, n))]
    heatmap = None
    if hyps and hyps[0].attention is not None:
        src_pieces = tokenizer.src.id_to_piece(subset[0]["src_ids"]) + ["</s>"]
        hyp_pieces = tokenizer.tgt.id_to_piece(hyps[0].tokens) + ["</s>"]
        heatmap = (src_pieces, hyp_pieces, hyps[0].attention.numpy())
    return ValResult(
        loss=loss,
        ppl=math.exp(min(loss, 50.0)),
        bleu=scores["bleu"],
        chrf=scores["chrf"],
        signatures=scores["signatures"],
        n_sentences=n,
        attn_entropy=entropy,
        attn_eos_mass=eos_mass,
        examples=examples,
        heatmap=heatmap,
    )
