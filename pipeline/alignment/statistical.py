"""A statistical word aligner as the yardstick for attention: eflomal (Östling & Tiedemann 2017).

Attention is not trained to align, so its links mean little without a comparison that is.
eflomal (a Bayesian IBM/HMM aligner with fertility, sampled by collapsed Gibbs sampling) is the
aligner users of Marian and fairseq run for guided alignment, and it needs no GPU.  Like every
IBM-style aligner it learns from co-occurrence, so it aligns the sentences to be scored *together
with* the training corpus: 100 or 447 gold sentences alone are too few to learn a lexicon.

Text is aligned as whitespace words, lowercased (the Europarl gold is lowercased); the training
corpus, raw captions, is first split by sacreBLEU's 13a tokenizer so that punctuation is its own
word, as it is in the gold files, whose own words are kept as they are (the gold indexes them).
Both directions are run and symmetrised with grow-diag-final-and (:mod:`.symmetrize`).
eflomal's sampler takes no seed: two runs differ slightly (about 0.01 AER on these sets).
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.alignment.symmetrize import Link, grow_diag_final_and
from pipeline.config import EflomalConfig
from pipeline.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class StatisticalLinks:
    """Links of the scored sentences, each direction and symmetrised, ``(source, target)`` 0-indexed."""

    forward: list[set[Link]]
    reverse: list[set[Link]]
    symmetrised: list[set[Link]]
    train_pairs: int
    seconds: float


def corpus_words(text: str) -> str:
    """Raw corpus text as lowercased whitespace words with punctuation split off (13a)."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(text.strip()).lower()


def usable_training_pairs(src: Sequence[str], tgt: Sequence[str], settings: EflomalConfig) -> list[tuple[str, str]]:
    """Tokenised training pairs with both sides non-empty and at most ``max_words`` words."""
    pairs = []
    limit = settings.train_pairs or len(src)
    for s, t in zip(src[:limit], tgt[:limit], strict=True):
        s_words, t_words = corpus_words(s), corpus_words(t)
        if s_words and t_words and max(len(s_words.split()), len(t_words.split())) <= settings.max_words:
            pairs.append((s_words, t_words))
    return pairs


def align_with_eflomal(
    scored_src: Sequence[str], scored_tgt: Sequence[str], train: Sequence[tuple[str, str]], settings: EflomalConfig
) -> StatisticalLinks:
    """Align the scored whitespace-tokenised pairs, appended to ``train``, in both directions.

    Raises :class:`UserError` (one line) when eflomal is not installed or fails.
    """
    eflomal = require_eflomal(settings)
    empty = [i + 1 for i, (s, t) in enumerate(zip(scored_src, scored_tgt)) if not s.split() or not t.split()]
    if empty:
        raise UserError(f"sentence pair {empty[0]} of the scored set has an empty side; eflomal needs words on both")
    src_lines = [s for s, _ in train] + [s.lower() for s in scored_src]
    tgt_lines = [t for _, t in train] + [t.lower() for t in scored_tgt]
    aligner = eflomal.Aligner(
        model=settings.model,
        n_samplers=settings.n_samplers,
        rel_iterations=settings.rel_iterations,
        null_prior=settings.null_prior,
    )
    log.info(
        "eflomal: aligning %d pairs (%d of training, %d scored), both directions",
        len(src_lines),
        len(train),
        len(scored_src),
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eflomal-") as tmp:
        fwd_path, rev_path = Path(tmp, "forward"), Path(tmp, "reverse")
        try:
            aligner.align(
                [line + "\n" for line in src_lines],
                [line + "\n" for line in tgt_lines],
                links_filename_fwd=str(fwd_path),
                links_filename_rev=str(rev_path),
                quiet=True,
            )
            forward, reverse = read_pharaoh(fwd_path), read_pharaoh(rev_path)
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            raise UserError(f"eflomal failed: {type(e).__name__}: {e}") from e
    seconds = time.perf_counter() - start
    if len(forward) != len(src_lines) or len(reverse) != len(src_lines):
        raise UserError(f"eflomal wrote {len(forward)} / {len(reverse)} lines of links for {len(src_lines)} pairs")
    n = len(scored_src)
    fwd, rev = forward[-n:], reverse[-n:]
    log.info("eflomal: done in %.0f s", seconds)
    return StatisticalLinks(fwd, rev, [grow_diag_final_and(f, r) for f, r in zip(fwd, rev)], len(train), seconds)


def require_eflomal(settings: EflomalConfig):
    """The eflomal module, or one line saying how to get it (checked before any slow work)."""
    if settings.model > 3:
        raise UserError(f"eflomal.model={settings.model} is not a model: 1 (IBM1), 2 (HMM) or 3 (HMM + fertility)")
    try:
        import eflomal
    except ImportError as e:
        raise UserError(f"eflomal is not installed ({e}); pip install eflomal, or use method=attention") from e
    return eflomal


def read_pharaoh(path: Path) -> list[set[Link]]:
    """``s-t`` links, 0-indexed, one line per sentence pair."""
    sentences = []
    for line in path.read_text(encoding="utf-8").splitlines():
        links = set()
        for token in line.split():
            s, _, t = token.partition("-")
            links.add((int(s), int(t)))
        sentences.append(links)
    return sentences
