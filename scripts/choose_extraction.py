"""Choose how attention becomes word links on one half of each gold set; report on the other half.

    python scripts/choose_extraction.py --set europarl-de-en=runs/full/bahdanau/checkpoints/best.pt \
        --set hansards-en-fr=runs/quick-enfr/bahdanau/checkpoints/best.pt[,REVERSE] [--gold ../shared/data/alignment]

Each ``--set NAME=CHECKPOINT[,REVERSE]`` names a folder of the gold directory (``test.<l1>``,
``test.<l2>``, ``gold.talp``, where the gold's i indexes l1), an attention checkpoint translating
between l1 and l2 (either way round) and, optionally, one translating the other way, whose
attention is the second direction (``align.reverse_checkpoint``; then ``combine`` is tried too).
The forced attention of every gold sentence pair is computed once;
every setting of ``align.extraction`` (pipeline/alignment/extraction.py: shift, source merge, rule,
threshold) is then scored on the first half of each set (``select``), the setting with the lowest
mean select AER over the sets is chosen, and its AER on the second halves (``report``) is printed
beside plain argmax (row i's heaviest source word), the diagonal and, with ``--eflomal``,
eflomal's.  ``--json F`` writes every figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.alignment.align import align_sentences  # noqa: E402
from pipeline.alignment.links import aer_by_half, check_gold_fits, diagonal_links, read_talp  # noqa: E402
from pipeline.config import (  # noqa: E402
    AlignAppConfig,
    AlignTarget,
    Combine,
    DecodeConfig,
    EflomalConfig,
    ExtractionConfig,
    LinkRule,
    SourceMerge,
    as_plain_dict,
)
from pipeline.data.textfile import read_lines  # noqa: E402
from pipeline.decoding.translate import load_model  # noqa: E402
from pipeline.runtime.hardware import cpu_description  # noqa: E402

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


def settings(bidirectional: bool) -> list[ExtractionConfig]:
    """Every setting tried: 2 shifts x 2 merges x (4 rules + 5 thresholds), x 3 combinations of the
    two directions when reverse models are given."""
    out = []
    combines = list(Combine) if bidirectional else [Combine.grow_diag_final_and]
    for shift, merge, combine in itertools.product((False, True), SourceMerge, combines):
        for rule in LinkRule:
            for threshold in THRESHOLDS if rule is LinkRule.threshold else (0.3,):
                out.append(ExtractionConfig(shift, merge, rule, threshold, combine))
    return out


def label(cfg: ExtractionConfig, bidirectional: bool) -> str:
    rule = f"threshold {cfg.threshold}" if cfg.rule is LinkRule.threshold else cfg.rule.value
    both = f" {cfg.combine.value}" if bidirectional else ""
    return f"shift={int(cfg.shift)} {cfg.source_merge.value:<4} {rule}{both}"


def gold_set(folder: Path, checkpoint: str, reverse: str | None, threads: int):
    """(aligned sentence pairs, gold links, sources, references) of one gold folder."""
    restored = load_model(checkpoint, "auto", threads, "auto")
    data = restored.config["data"]
    l1, l2 = folder.name.rsplit("-", 2)[-2:]
    if {l1, l2} != {data["src_lang"], data["tgt_lang"]}:
        raise SystemExit(f"{checkpoint} translates {data['src_lang']}-{data['tgt_lang']}, not {l1}-{l2} ({folder})")
    src_lang, tgt_lang = data["src_lang"], data["tgt_lang"]
    srcs, refs = read_lines(folder / f"test.{src_lang}"), read_lines(folder / f"test.{tgt_lang}")
    cfg = AlignAppConfig(
        checkpoint=checkpoint, reverse_checkpoint=reverse, decode=DecodeConfig(), target=AlignTarget.ref
    )
    cfg.threads = threads
    aligned = align_sentences(restored, cfg, list(range(len(srcs))), srcs, refs)
    gold = read_talp(folder / "gold.talp", source_first=src_lang == l1)
    check_gold_fits(gold, [len(a.src_words) for a in aligned], [len(a.tgt_words) for a in aligned], str(folder))
    return aligned, gold, srcs, refs, f"{src_lang}-{tgt_lang}"


def eflomal_aer(srcs: list[str], refs: list[str], gold: list, pair: str) -> dict:
    """eflomal (grow-diag-final-and) on the same pairs beside Multi30k's training split."""
    from pipeline.alignment.statistical import align_with_eflomal, usable_training_pairs
    from pipeline.config import DataConfig
    from pipeline.data.corpus import load_corpus

    src_lang, tgt_lang = pair.split("-")
    train = load_corpus(DataConfig(src_lang=src_lang, tgt_lang=tgt_lang))["train"]
    settings_ = EflomalConfig()
    pairs = usable_training_pairs(list(train["src"]), list(train["tgt"]), settings_)
    return aer_by_half(align_with_eflomal(srcs, refs, pairs, settings_).symmetrised, gold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", required=True, metavar="NAME=CHECKPOINT")
    parser.add_argument("--gold", type=Path, default=REPO.parent / "shared" / "data" / "alignment")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eflomal", action="store_true", help="also score eflomal on each set")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sets = {}
    for item in args.set:
        name, _, checkpoints = item.partition("=")
        checkpoint, _, reverse = checkpoints.partition(",")
        sets[name] = gold_set(args.gold / name, checkpoint, reverse or None, args.threads)
    bidirectional = any("," in item for item in args.set)
    table = []
    for cfg in settings(bidirectional):
        scores = {name: aer_by_half([a.links(cfg) for a in found[0]], found[1]) for name, found in sets.items()}
        table.append((cfg, scores))
    chosen, chosen_scores = min(table, key=lambda row: sum(s["select"]["aer"] for s in row[1].values()))
    argmax = ExtractionConfig(rule=LinkRule.argmax)
    plain = next(scores for cfg, scores in table if cfg == argmax)
    print(f"CPU: {cpu_description(args.threads)}")
    print(f"{'setting':<34}" + "".join(f"{n + ' select':>24}{n + ' report':>24}" for n in sets))
    for cfg, scores in table:
        cells = "".join(f"{s['select']['aer']:>24.3f}{s['report']['aer']:>24.3f}" for s in scores.values())
        print(f"{label(cfg, bidirectional):<34}{cells}")
    print(f"chosen on the select halves: {label(chosen, bidirectional)}")
    result: dict = {"chosen": as_plain_dict(chosen), "bidirectional": bidirectional, "sets": {}}
    for name, (aligned, gold, srcs, refs, pair) in sets.items():
        diagonal = aer_by_half([set(diagonal_links(len(a.src_words), len(a.tgt_words))) for a in aligned], gold)
        row = {"chosen": chosen_scores[name], "argmax": plain[name], "diagonal": diagonal}
        if args.eflomal:
            row["eflomal"] = eflomal_aer(srcs, refs, gold, pair)
        result["sets"][name] = row
        shown = ", ".join(f"{k} {v['report']['aer']:.3f}" for k, v in row.items())
        print(f"{name} ({len(gold)} pairs, report half {len(gold) - len(gold) // 2}): AER {shown}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
