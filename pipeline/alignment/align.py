"""Export alignments: ``python -m pipeline.align checkpoint=PATH [split=test] [gold=FILE] ...``.

What is aligned (``target``):

* ``hyp``: the model's own translation, decoded with ``decode`` (greedy or beam;
  under beam search each hypothesis carries its own attention, followed through the
  back-pointers).  This is what Bahdanau et al. 2015, fig. 3 shows.
* ``ref``: forced decoding of the reference translation (teacher forcing), so the
  attention is over the *given* sentence pair.  AER needs this: the gold links are
  between the gold sentences' words.

Outputs, in ``out`` (default ``<run_dir>/align/<input>.<target>/``):
``sentNNNN.{png,svg,pdf}`` heatmaps of the selected sentences, ``index.html`` (the
interactive viewer), ``alignments.txt`` (Pharaoh, word level, one line per aligned
sentence in the order of ``diagnostics.json``'s ``ids``), ``diagnostics.json`` and,
with ``gold``, ``aer.json`` over every line of the gold file, with a diagonal
baseline for comparison.  Rules for merging pieces and reading off links are in
:mod:`pipeline.alignment.links`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.alignment.extraction import combined, extract_links, word_weights
from pipeline.alignment.links import (
    aer_by_half,
    check_gold_fits,
    diagnostics,
    diagonal_links,
    hard_links,
    merge_to_words,
    pharaoh,
    piece_labels,
    read_talp,
    word_index_of_pieces,
    words_of_pieces,
)
from pipeline.alignment.yardstick import eflomal_outputs
from pipeline.config import (
    AlignAppConfig,
    AlignMethod,
    AlignTarget,
    DataConfig,
    ExtractionConfig,
    Level,
    Quantize,
    as_plain_dict,
    to_object,
)
from pipeline.data.batching import collate
from pipeline.decoding.translate import checkpoint_names, checkpoint_paths, checkpoint_tag, load_model, translate_texts
from pipeline.errors import UserError
from pipeline.evaluation.evaluate import decode_tag, read_inputs
from pipeline.files import writable_folder, write_atomic
from pipeline.reporting.gallery import gallery_html
from pipeline.reporting.plots import save_heatmap
from pipeline.runtime.precision import autocast_for, use_bf16
from pipeline.training.checkpoint import Restored, load_checkpoint

log = logging.getLogger(__name__)

EOS_LABEL = "</s>"


@dataclass
class ReverseAttention:
    """A reverse model's forced attention ``[src pieces + 1, ref pieces + 1]`` (its own pieces), with
    each piece's whitespace word."""

    weights: np.ndarray
    ref_word_of: list[int]
    src_word_of: list[int]

    def words(self) -> tuple[int, int]:
        """(source words, reference words) by this model's tokenizer."""
        return max(self.src_word_of, default=-1) + 1, max(self.ref_word_of, default=-1) + 1


@dataclass
class Aligned:
    """One sentence pair with its attention at subword and word level."""

    id: int
    src_pieces: list[str]
    tgt_pieces: list[str]
    weights: np.ndarray  # [tgt pieces + 1, src pieces + 1]
    src_words: list[str]
    tgt_words: list[str]
    word_weights: np.ndarray  # [tgt words + 1, src words + 1]
    src_word_of: list[int]  # each source piece's word
    tgt_word_of: list[int]  # each target piece's word
    reverse: ReverseAttention | None = None  # a reverse model's forced attention of this pair

    def links(self, cfg: ExtractionConfig) -> set[tuple[int, int]]:
        """Word links by ``cfg``, combined with the reverse model's where one was given
        (pipeline/alignment/extraction.py)."""
        forward = extract_links(self.weights, self.src_word_of, self.tgt_word_of, cfg)
        if self.reverse is None:
            return forward
        r = self.reverse
        return combined(forward, word_weights(r.weights, r.ref_word_of, r.src_word_of, cfg), cfg)

    def view(self, level: Level) -> tuple[list[str], list[str], np.ndarray]:
        """(source labels, target labels, weights) at ``level``, EOS row and column included."""
        if level is Level.word:
            return self.src_words + [EOS_LABEL], self.tgt_words + [EOS_LABEL], self.word_weights
        return self.src_pieces + [EOS_LABEL], self.tgt_pieces + [EOS_LABEL], self.weights


@torch.no_grad()
def forced_attention(
    restored: Restored, src_ids: list[list[int]], tgt_ids: list[list[int]], bf16: bool, batch_size: int = 64
) -> list[np.ndarray]:
    """Teacher-forced attention ``[len(tgt) + 1, len(src) + 1]`` for each pair, in input order."""
    model = restored.model
    device = next(model.parameters()).device
    out: list[np.ndarray] = [np.zeros(0)] * len(src_ids)
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        b = collate([src_ids[i] for i in idx], [tgt_ids[i] for i in idx], idx)
        with autocast_for(device, bf16):
            _, attn = model(b.src.to(device), b.src_lens.to(device), b.tgt_in.to(device))
        attn = attn.float().cpu().numpy()
        for row, i in enumerate(idx):
            out[i] = attn[row, : len(tgt_ids[i]) + 1, : len(src_ids[i]) + 1]
    return out


def _selection(cfg: AlignAppConfig, n: int) -> list[int]:
    if cfg.ids:
        bad = [i for i in cfg.ids if not 0 <= i < n]
        if bad:
            raise UserError(f"ids={bad} are out of range: the input has {n} sentences (0-based ids 0..{n - 1})")
        return list(cfg.ids)
    return list(range(n if cfg.num <= 0 else min(cfg.num, n)))


def _target(cfg: AlignAppConfig, refs: list[str] | None) -> AlignTarget:
    target = AlignTarget(cfg.target)
    if target is AlignTarget.auto:
        target = AlignTarget.ref if cfg.gold else AlignTarget.hyp
    if cfg.gold and target is not AlignTarget.ref:
        raise UserError("gold needs target=ref (AER scores the attention over the gold sentence pair), not target=hyp")
    if target is AlignTarget.ref and refs is None:
        raise UserError("target=ref (and gold) need references: give ref_file=FILE, line-aligned with src_file")
    return target


def align_sentences(
    restored: Restored, cfg: AlignAppConfig, ids: list[int], srcs: list[str], refs: list[str] | None
) -> list[Aligned]:
    """Attention of each selected sentence, merged to words."""
    tok = restored.tokenizer
    bf16 = use_bf16(cfg.precision, restored.device)
    src_enc = tok.src.encode_with_surfaces([srcs[i] for i in ids])
    src_ids = [ids_ for ids_, _, _ in src_enc]
    if _target(cfg, refs) is AlignTarget.ref:
        tgt_enc = tok.tgt.encode_with_surfaces([refs[i] for i in ids])  # type: ignore[index]
        matrices = forced_attention(restored, src_ids, [ids_ for ids_, _, _ in tgt_enc], bf16)
    else:
        result = translate_texts(restored, [srcs[i] for i in ids], cfg.decode, bf16)
        tgt_enc = [(h.tokens, tok.tgt.id_to_piece(h.tokens), None) for h in result.hyps]
        matrices = [h.attention.numpy() for h in result.hyps]  # type: ignore[union-attr]
    reverse = reverse_attention(cfg, [srcs[i] for i in ids], [refs[i] for i in ids]) if cfg.reverse_checkpoint else None
    aligned = []
    for k, i in enumerate(ids):
        (_, sp, s_surf), (_, tp, t_surf) = src_enc[k], tgt_enc[k]
        src_word_of, tgt_word_of = word_index_of_pieces(sp), word_index_of_pieces(tp)
        words = merge_to_words(matrices[k], src_word_of, tgt_word_of)
        aligned.append(
            Aligned(
                i,
                piece_labels(sp, s_surf),
                piece_labels(tp, t_surf),
                matrices[k],
                words_of_pieces(sp, s_surf),
                words_of_pieces(tp, t_surf),
                words,
                src_word_of,
                tgt_word_of,
                None if reverse is None else reverse[k],
            )
        )
        if reverse is not None and reverse[k].words() != (words.shape[1] - 1, words.shape[0] - 1):
            raise UserError(
                f"{cfg.reverse_checkpoint}: sentence {i + 1} has {reverse[k].words()} source x target words by its "
                f"tokenizer, not {(words.shape[1] - 1, words.shape[0] - 1)}; give whitespace-tokenized text"
            )
    return aligned


def reverse_attention(cfg: AlignAppConfig, srcs: list[str], refs: list[str]) -> list[ReverseAttention]:
    """The reverse model's attention when it force-decodes each source from its reference."""
    if _target(cfg, refs) is not AlignTarget.ref:
        raise UserError("reverse_checkpoint force-decodes the source from the reference: it needs target=ref")
    restored = load_model(cfg.reverse_checkpoint, cfg.device, cfg.threads, cfg.impl, weights=cfg.weights)  # type: ignore[arg-type]
    if not restored.model.has_attention:
        raise UserError(f"reverse_checkpoint={cfg.reverse_checkpoint} is a model without attention")
    forward = load_checkpoint(checkpoint_paths(cfg.checkpoint)[0])["config"]["data"]
    data = restored.config["data"]
    if (data["src_lang"], data["tgt_lang"]) != (forward["tgt_lang"], forward["src_lang"]):
        raise UserError(
            f"reverse_checkpoint={cfg.reverse_checkpoint} translates {data['src_lang']}->{data['tgt_lang']}; "
            f"the reverse of {cfg.checkpoint} is {forward['tgt_lang']}->{forward['src_lang']}"
        )
    tok = restored.tokenizer
    ref_enc, src_enc = tok.src.encode_with_surfaces(refs), tok.tgt.encode_with_surfaces(srcs)
    matrices = forced_attention(
        restored, [e[0] for e in ref_enc], [e[0] for e in src_enc], use_bf16(cfg.precision, restored.device)
    )
    return [
        ReverseAttention(m, word_index_of_pieces(r[1]), word_index_of_pieces(s[1]))
        for m, r, s in zip(matrices, ref_enc, src_enc)
    ]


def _links_at(item: Aligned, level: Level, cfg: ExtractionConfig) -> list[tuple[int, int]]:
    """The viewer's overlay: the extraction's links at word level, the argmax piece at subword level."""
    return sorted(item.links(cfg)) if level is Level.word else hard_links(item.weights)


def _check_word_counts(aligned: list[Aligned], srcs: list[str], refs: list[str], cfg: AlignAppConfig) -> None:
    """AER compares word indices with the gold's: the pieces must spell the same whitespace words."""
    for a in aligned:
        for side, words, text, path in (
            ("source", a.src_words, srcs[a.id], cfg.src_file),
            ("reference", a.tgt_words, refs[a.id], cfg.ref_file),
        ):
            if len(words) != len(text.split()):
                raise UserError(
                    f"{path}:{a.id + 1}: the {side} has {len(text.split())} whitespace words but its pieces spell "
                    f"{len(words)}; give whitespace-tokenized text whose words normalisation neither splits nor drops"
                )


def score_aer(aligned: list[Aligned], cfg: AlignAppConfig) -> dict:
    """AER, precision and recall of the model's links and of the diagonal baseline."""
    gold = read_talp(cfg.gold, cfg.gold_source_first)  # type: ignore[arg-type]
    check_gold_fits(gold, [len(a.src_words) for a in aligned], [len(a.tgt_words) for a in aligned], cfg.gold)  # type: ignore[arg-type]
    model = [a.links(cfg.extraction) for a in aligned]
    diagonal = [set(diagonal_links(len(a.src_words), len(a.tgt_words))) for a in aligned]
    return {
        "gold": str(Path(cfg.gold).resolve()),  # type: ignore[arg-type]
        "sentences": len(gold),
        "model": aer_by_half(model, gold),
        "diagonal_baseline": aer_by_half(diagonal, gold),
        "extraction": as_plain_dict(cfg.extraction),
    }


def align(cfg: AlignAppConfig) -> dict:
    """Run the export; returns a summary (paths and scores)."""
    method = AlignMethod(cfg.method)
    if method is AlignMethod.eflomal:
        return align_with_eflomal_only(cfg)
    if not cfg.checkpoint:
        raise UserError(f"method={method.value} needs checkpoint=PATH (an attention model); method=eflomal needs none")
    summary, inputs = align_attention(cfg)
    if method is AlignMethod.both:
        try:
            summary["eflomal"] = eflomal_outputs(
                cfg, inputs.data, inputs.srcs, inputs.refs, Path(summary["out"]) / "eflomal"
            )
        except UserError as e:
            log.warning("eflomal: %s; the attention results stand", e)
            summary["eflomal"] = {"error": str(e)}
    return summary


def align_with_eflomal_only(cfg: AlignAppConfig) -> dict:
    """eflomal alone, on the checkpoint's corpus when one is given, else on ``data``."""
    if cfg.checkpoint:
        primary = checkpoint_paths(cfg.checkpoint)[0]
        data = to_object(load_checkpoint(primary)["config"]["data"], DataConfig, "data")
        base = Path(primary).resolve().parent.parent / "align"
    else:
        data, base = cfg.data, Path("runs/eflomal") / f"{cfg.data.src_lang}-{cfg.data.tgt_lang}"
    stem, srcs, refs = read_inputs(cfg.split, cfg.src_file, cfg.ref_file, {"data": data}, False, cfg.check_language)
    return eflomal_outputs(cfg, data, srcs, refs, Path(cfg.out) if cfg.out else base / f"{stem}.eflomal")


@dataclass
class AlignInputs:
    """What was aligned: the run's corpus config and the input pairs (eflomal aligns them too)."""

    data: DataConfig
    srcs: list[str]
    refs: list[str] | None


def align_attention(cfg: AlignAppConfig) -> tuple[dict, AlignInputs]:
    """Heatmaps, links and AER of the checkpoint's attention."""
    if Quantize(cfg.decode.quantize) is not Quantize.none:
        raise UserError(
            "align plots the attention of the float model; drop decode.quantize (int8 is for evaluate and translate)"
        )
    if cfg.out:
        writable_folder(Path(cfg.out))  # before the work, not after it
    restored = load_model(cfg.checkpoint, cfg.device, cfg.threads, cfg.impl, weights=cfg.weights)
    if not restored.model.has_attention:
        raise UserError(
            f"{cfg.checkpoint} is a {restored.config['model']['name']} model without attention: there is nothing to "
            "plot; align an attention checkpoint (model=bahdanau)"
        )
    stem, srcs, refs = read_inputs(cfg.split, cfg.src_file, cfg.ref_file, restored.config, False, cfg.check_language)
    target = _target(cfg, refs)
    plotted = _selection(cfg, len(srcs))
    ids = list(range(len(srcs))) if cfg.gold else plotted
    aligned = align_sentences(restored, cfg, ids, srcs, refs)
    aer = None
    if cfg.gold:
        _check_word_counts(aligned, srcs, refs, cfg)  # type: ignore[arg-type]
        aer = score_aer(aligned, cfg)
    tag = "ref" if target is AlignTarget.ref else decode_tag(cfg.decode)
    shown = "reference, forced decoding" if target is AlignTarget.ref else f"translation, {tag}"
    tag += checkpoint_tag(restored, cfg.weights)
    out = writable_folder(
        Path(cfg.out) if cfg.out else restored.path.resolve().parent.parent / "align" / f"{stem}.{tag}"
    )
    meta = {
        "model": restored.config["model"]["name"],
        "step": restored.step,
        "checkpoint": checkpoint_names(cfg.checkpoint),
        "input": cfg.src_file or cfg.split.value,
        "target": target.value,
        "decode": tag,
        "level": Level(cfg.level).value,
        "shown": shown,
    }
    _write_plots(aligned, plotted, cfg, meta, out)
    write_atomic(out / "alignments.txt", "".join(pharaoh(a.links(cfg.extraction)) + "\n" for a in aligned))
    diag = {**meta, "ids": ids, "word_level": diagnostics([a.word_weights for a in aligned])}
    write_atomic(out / "diagnostics.json", json.dumps(diag, indent=2) + "\n")
    if aer is not None:
        write_atomic(out / "aer.json", json.dumps({**meta, **aer}, indent=2) + "\n")
    return {
        "out": str(out),
        "plotted": len(plotted),
        "aligned": len(aligned),
        "diagnostics": diag["word_level"],
        "aer": aer,
    }, AlignInputs(to_object(restored.config["data"], DataConfig, "data"), srcs, refs)


def _write_plots(aligned: list[Aligned], plotted: list[int], cfg: AlignAppConfig, meta: dict, out: Path) -> None:
    level = Level(cfg.level)
    by_id = {a.id: a for a in aligned}
    items = []
    for i in plotted:
        src, tgt, w = by_id[i].view(level)
        title = f"sentence {i} · {meta['model']} step {meta['step']} · {meta['shown']}"
        save_heatmap(src, tgt, w, title, out / f"sent{i:04d}", [f.value for f in cfg.formats])
        items.append(
            {
                "id": i,
                "src": src,
                "tgt": tgt,
                "weights": w.tolist(),
                "links": _links_at(by_id[i], level, cfg.extraction),
            }
        )
    subtitle = (
        f"{meta['model']} step {meta['step']}, {meta['input']}, {meta['shown']}, "
        f"{level.value} level, {len(items)} sentences"
    )
    write_atomic(out / "index.html", gallery_html(items, "Attention alignments", subtitle))
