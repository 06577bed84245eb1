"""The eflomal arm of ``python -m pipeline.align``: the scored pairs aligned beside the training corpus.

Writes, into its output folder, ``alignments.txt`` (grow-diag-final-and), ``alignments.forward.txt``
and ``alignments.reverse.txt`` (Pharaoh ``s-t``, 0-indexed, whitespace words of the input as
given, one line per input pair) and, with ``gold``, ``aer.json``: AER, precision and recall of
each direction, their intersection and the symmetrised links, and the diagonal, over all
sentences and over each half of the gold set (``select`` / ``report``, see
:func:`pipeline.alignment.links.aer_by_half`).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.alignment.links import aer_by_half, check_gold_fits, diagonal_links, pharaoh, read_talp
from pipeline.alignment.statistical import (
    StatisticalLinks,
    align_with_eflomal,
    require_eflomal,
    usable_training_pairs,
)
from pipeline.config import AlignAppConfig, DataConfig, as_plain_dict
from pipeline.errors import UserError
from pipeline.files import write_atomic


def eflomal_outputs(cfg: AlignAppConfig, data: DataConfig, srcs: list[str], refs: list[str] | None, out: Path) -> dict:
    """Align ``srcs``/``refs`` with eflomal, write the links (and AER with ``cfg.gold``) into ``out``."""
    require_eflomal(cfg.eflomal)
    if refs is None:
        raise UserError("method=eflomal aligns sentence pairs: give ref_file=FILE beside src_file, or split=val|test")
    gold = read_talp(cfg.gold, cfg.gold_source_first) if cfg.gold else None
    if gold is not None:
        check_gold_fits(gold, [len(s.split()) for s in srcs], [len(t.split()) for t in refs], cfg.gold)  # type: ignore[arg-type]
    from pipeline.data.corpus import load_corpus  # imports datasets (~0.6 s): only when eflomal runs

    train = load_corpus(data)["train"]
    pairs = usable_training_pairs(list(train["src"]), list(train["tgt"]), cfg.eflomal)
    links = align_with_eflomal(srcs, refs, pairs, cfg.eflomal)
    out.mkdir(parents=True, exist_ok=True)
    for name, sentences in (("", links.symmetrised), (".forward", links.forward), (".reverse", links.reverse)):
        write_atomic(out / f"alignments{name}.txt", "".join(pharaoh(s) + "\n" for s in sentences))
    summary = {
        "method": "eflomal",
        "symmetrisation": "grow-diag-final-and",
        "pair": f"{data.src_lang}-{data.tgt_lang}",
        "training_pairs": links.train_pairs,
        "seconds": round(links.seconds, 1),
        "settings": as_plain_dict(cfg.eflomal),
        "sentences": len(srcs),
    }
    if gold is not None:
        summary.update(gold=str(Path(cfg.gold).resolve()), **scores(links, gold, srcs, refs))  # type: ignore[arg-type]
        write_atomic(out / "aer.json", json.dumps(summary, indent=2) + "\n")
    summary["out"] = str(out)
    return summary


def scores(links: StatisticalLinks, gold: list, srcs: list[str], refs: list[str]) -> dict:
    """AER of each direction, their intersection, the symmetrised links and the diagonal."""
    intersection = [f & r for f, r in zip(links.forward, links.reverse)]
    diagonal = [set(diagonal_links(len(s.split()), len(t.split()))) for s, t in zip(srcs, refs)]
    return {
        "model": aer_by_half(links.symmetrised, gold),
        "forward": aer_by_half(links.forward, gold),
        "reverse": aer_by_half(links.reverse, gold),
        "intersection": aer_by_half(intersection, gold),
        "diagonal_baseline": aer_by_half(diagonal, gold),
    }
