"""Translation metrics, all computed by sacrebleu (nothing metric-related is hand-written).

Scores are reported with sacrebleu's signature strings, so that a number in a
report always says how it was computed (tokenisation, smoothing, version).
"""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF, TER

METRICS = {"bleu": BLEU, "chrf": CHRF, "ter": TER}


def score_corpus(
    hyps: Sequence[str], refs: Sequence[str], names: Sequence[str] = ("bleu", "chrf", "ter"), n_bootstrap: int = 1
) -> dict:
    """Corpus-level scores for one reference per sentence.

    Returns ``{name: score, ..., "signatures": {name: signature}}``; with
    ``n_bootstrap > 1`` also ``{name}_ci95``, the half-width of sacrebleu's 95%
    bootstrap confidence interval (resampling sentences with replacement).
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    out: dict = {"signatures": {}}
    for name in names:
        metric = METRICS[name]()
        result = metric.corpus_score(list(hyps), [list(refs)], n_bootstrap=n_bootstrap)
        out[name] = float(result.score)
        if n_bootstrap > 1:
            out[f"{name}_ci95"] = float(result._ci)  # sacrebleu keeps the CI half-width here
        out["signatures"][name] = str(metric.get_signature())
    return out
