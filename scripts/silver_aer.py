"""Attention AER in the training domain, against eflomal's links as silver gold.

    python scripts/silver_aer.py CHECKPOINT [CHECKPOINT ...] [--split test] [--sentences 500]

The human gold sets are parliament proceedings, far from Multi30k's captions (a fifth to a quarter
of their words never occur in its training split).  To tell what is domain from what is the
model, this scores each checkpoint's forced attention (by ``align.extraction``'s defaults) on the
first ``--sentences`` pairs of a split of its own corpus, with eflomal's links of those pairs
(aligned beside the training split) as the reference: the links both directions agree on as
*sure*, the grow-diag-final-and links as *possible*.  Words are the whitespace words of the
raw text, for the attention and for eflomal alike.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.alignment.align import align_sentences  # noqa: E402
from pipeline.alignment.links import GoldAlignment, aer_counts, diagonal_links  # noqa: E402
from pipeline.alignment.statistical import align_with_eflomal, usable_training_pairs  # noqa: E402
from pipeline.config import (  # noqa: E402
    AlignAppConfig,
    AlignTarget,
    DataConfig,
    DecodeConfig,
    EflomalConfig,
    to_object,
)
from pipeline.data.corpus import load_corpus  # noqa: E402
from pipeline.decoding.translate import load_model  # noqa: E402
from pipeline.runtime.hardware import cpu_description  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"CPU: {cpu_description(args.threads)}")
    silver: dict = {}  # per language pair: (sources, references, silver gold)
    for checkpoint in args.checkpoints:
        restored = load_model(checkpoint, "auto", args.threads, "auto")
        data = to_object(restored.config["data"], DataConfig, "data")
        pair = (data.src_lang, data.tgt_lang)
        if pair not in silver:
            corpus = load_corpus(data)
            split = corpus[args.split].select(range(min(args.sentences, len(corpus[args.split]))))
            srcs, refs = list(split["src"]), list(split["tgt"])
            train = usable_training_pairs(list(corpus["train"]["src"]), list(corpus["train"]["tgt"]), EflomalConfig())
            links = align_with_eflomal(srcs, refs, train, EflomalConfig())
            gold = [GoldAlignment(f & r, g) for f, r, g in zip(links.forward, links.reverse, links.symmetrised)]
            silver[pair] = (srcs, refs, gold)
        srcs, refs, gold = silver[pair]
        cfg = AlignAppConfig(checkpoint=checkpoint, decode=DecodeConfig())
        cfg.target, cfg.threads = AlignTarget.ref, args.threads
        aligned = align_sentences(restored, cfg, list(range(len(srcs))), srcs, refs)
        model = aer_counts([a.links(cfg.extraction) for a in aligned], gold)
        diagonal = aer_counts([set(diagonal_links(len(a.src_words), len(a.tgt_words))) for a in aligned], gold)
        print(
            f"{checkpoint}: {'-'.join(pair)} {args.split}[:{len(srcs)}] against eflomal's links: attention AER "
            f"{model['aer']:.3f} (P {model['precision']:.3f} / R {model['recall']:.3f}), diagonal {diagonal['aer']:.3f}"
        )


if __name__ == "__main__":
    main()
