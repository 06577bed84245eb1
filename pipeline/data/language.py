"""Is a text file in the language the checkpoint expects?  (py3langid: Lui and Baldwin, 2012)

A reference in the wrong language scores a BLEU near zero that reads like a bad model, and a
source in the target language gives "translations" that copy it; both come from a file name
mistaken (``test.en`` for ``test.de``, or a gold set of another pair).  So evaluate and align
identify the language of the files they are given and refuse one that is confidently another
language, in one line, before any decoding.  A language that py3langid does not know (or a
code it does not use, e.g. a corpus's own side names) is not judged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from pipeline.errors import UserError

SAMPLE_CHARS = 20_000  # the file's first lines up to this length are identified (~0.1 s)
MIN_LETTERS = 200  # below this the sample is too short to be sure of its language
CONFIDENCE = 0.99  # refuse only when the other language is at least this probable


@functools.cache
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier  # its model loads in ~0.3 s: when asked

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def base_code(lang: str) -> str:
    """``pt_BR`` / ``en-GB`` -> ``pt`` / ``en``: the identifier knows languages, not regions."""
    return lang.replace("_", "-").split("-")[0].lower()


def language_of(lines: Sequence[str]) -> tuple[str, float] | None:
    """(ISO 639-1 code, probability) of the first lines' language, or None when they are too short."""
    text = "\n".join(lines)[:SAMPLE_CHARS]
    if sum(c.isalpha() for c in text) < MIN_LETTERS:
        return None
    lang, prob = _identifier().classify(text)
    return lang, float(prob)


def check_language(lines: Sequence[str], expected: str, key: str, pair: str) -> None:
    """One-line :class:`UserError` when ``lines`` (the file of config key ``key``, e.g.
    ``ref_file=test.fr``) are confidently not in ``expected``; ``pair`` names the checkpoint's
    direction for the message."""
    want = base_code(expected)
    if want not in _identifier().nb_classes:
        return
    found = language_of(lines)
    if found is None or found[0] == want or found[1] < CONFIDENCE:
        return
    raise UserError(
        f"{key} reads as {found[0]} text (py3langid, p {found[1]:.2f}), but the checkpoint translates {pair}, so "
        f"it must be {expected}; give the {expected} file (or check_language=false to use it anyway)"
    )
