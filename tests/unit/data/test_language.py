"""The language check of evaluate's and align's files: refuses the other language, judges nothing it cannot."""

from __future__ import annotations

import gzip

import pytest
from tinydata import MULTI30K

from pipeline.data.language import base_code, check_language, language_of
from pipeline.errors import UserError


def _lines(lang: str, n: int = 60) -> list[str]:
    with gzip.open(MULTI30K / f"val.{lang}.gz", "rt", encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(n)]


@pytest.mark.parametrize("lang", ["de", "en", "fr", "cs"])
def test_multi30k_captions_read_as_their_own_language(lang):
    found = language_of(_lines(lang))
    assert found is not None and found[0] == lang and found[1] > 0.99
    check_language(_lines(lang), lang, "ref_file=x", "de->en")  # no error


def test_the_other_side_of_the_pair_is_refused_naming_the_key_and_both_languages():
    with pytest.raises(UserError, match=r"ref_file=val\.de reads as de text .* translates de->en, so it must be en"):
        check_language(_lines("de"), "en", "ref_file=val.de", "de->en")


def test_too_little_text_or_an_unknown_code_is_not_judged():
    assert language_of(["ein Hund ."]) is None
    check_language(["ein Hund ."] * 3, "en", "ref_file=x", "de->en")
    check_language(_lines("de"), "xx-source", "ref_file=x", "xx-source->en")  # not a language it knows


def test_a_region_or_script_suffix_is_dropped():
    assert base_code("pt_BR") == "pt" and base_code("en-GB") == "en" and base_code("DE") == "de"
    check_language(_lines("en"), "en_US", "ref_file=x", "de->en_US")
