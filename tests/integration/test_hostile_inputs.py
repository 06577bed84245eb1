"""Files and paths of every kind a user has, given to translate and evaluate (issue #34, item 2).

Each row of TEXT_CASES is a file's bytes and what must happen: ``("lines", n)``, the command
succeeds with exactly ``n`` output lines (one per input line, as ``wc -l`` would count them with
a final newline), or ``("error", words)``, exit 2 with one ``error:`` line holding ``words`` and no
traceback. Each row runs through ``translate input=FILE``; EVALUATED rows also through ``evaluate``
(the file as src_file, with a reference of as many lines), whose hypothesis file must then have
that many lines too. PATH_CASES are paths that are not what they seem; LANGUAGE_CASES are source,
reference and gold files of another length or another language pair than the (de->en) checkpoint's.
Add a case with one line.  A run directory changed under a command: test_hostile_runs.py.

Cases tried: 17 text files (3 of them through evaluate too), 6 paths and 7 mismatched files: 33
runs; docs/reliability.md lists what each promises.
"""

from __future__ import annotations

import gzip
import json
import os

import pytest
from clirun import GOLD, assert_user_error, run

GOOD = "ein Hund läuft .\n".encode()

TEXT_CASES = [
    ("plain", GOOD * 3, ("lines", 3)),
    ("crlf", b"ein Hund .\r\nzwei Katzen .\r\n", ("lines", 2)),
    ("cr-only", b"ein Hund .\rzwei Katzen .\r", ("error", [".de:1: carriage return", "tr"])),
    ("bom", b"\xef\xbb\xbfein Hund .\nzwei Katzen .\n", ("lines", 2)),
    ("empty-lines", b"\nein Hund .\n\n\n", ("lines", 4)),
    ("only-spaces", b"   \n\t \n", ("lines", 2)),
    ("unseen-scripts", "狗在跑 。\nالكلب يركض\nсобака бежит\n".encode(), ("lines", 3)),
    ("emoji", "🐕🐕 läuft 🏃‍♂️ .\n".encode(), ("lines", 1)),
    ("long-line", ("Hund " * 800 + "\n").encode(), ("lines", 1)),
    ("too-long-line", ("Hund " * 30000 + "\n").encode(), ("error", [".de:1: line of", "max_line_bytes"])),
    ("latin-1", "café au lait\nein Hund\n".encode("latin-1"), ("error", [".de:1: invalid UTF-8", "re-encode"])),
    ("binary", bytes(range(256)) * 4, ("error", ["NUL byte", "binary"])),
    ("no-final-newline", b"ein Hund .\nzwei Katzen .", ("lines", 2)),
    ("empty-file", b"", ("lines", 0)),  # nothing in, nothing out
    ("unicode-line-separators", "ein\u2028Hund\x85.\nzwei\u2029Katzen\n".encode(), ("lines", 2)),
]
EVALUATED = {"crlf", "empty-lines", "unicode-line-separators"}  # evaluate reads files as translate does
GZ_CASES = [
    ("gzip", gzip.compress(GOOD * 2), ("lines", 2)),
    ("truncated-gzip", gzip.compress(GOOD * 500)[:40], ("error", ["truncated or corrupt"])),
]


def _expect(proc, expected, what: str) -> None:
    kind, value = expected
    if kind == "error":
        assert_user_error(proc, *value)
        return
    assert proc.returncode == 0, f"{what}: {proc.stderr[-1500:]}"
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("\n") == value, (what, proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "data", "expected"), TEXT_CASES + GZ_CASES, ids=[c[0] for c in TEXT_CASES + GZ_CASES])
def test_a_text_file_translates_line_for_line_or_is_refused_in_one_line(trained, tmp_path, name, data, expected):
    path = tmp_path / (f"{name}.de.gz" if name in {c[0] for c in GZ_CASES} else f"{name}.de")
    path.write_bytes(data)
    _expect(run("translate", f"checkpoint={trained['ckpt']}", f"input={path}"), expected, "translate")
    if name not in EVALUATED:
        return
    n = expected[1]
    ref = tmp_path / "ref.en"
    ref.write_text("a dog runs .\n" * n)
    out = tmp_path / "eval"
    proc = run("evaluate", f"checkpoint={trained['ckpt']}", f"src_file={path}", f"ref_file={ref}", f"out={out}",
               "n_bootstrap=1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-1500:]
    report = json.loads(next(out.glob("*.json")).read_text())
    assert report["n_sentences"] == n
    assert next(out.glob("*.hyp.txt")).read_bytes().count(b"\n") == n


def _dangling(tmp):
    link = tmp / "gone.de"
    os.symlink(tmp / "deleted-long-ago.de", link)
    return link


def _a_file(tmp):
    path = tmp / "just-a-file"
    path.write_text("x\n")
    return path


PATH_CASES = [
    ("translate", lambda tmp, t: [f"input={tmp}"], ["is a directory", "give a file"]),
    ("translate", lambda tmp, t: [f"input={_dangling(tmp)}"], ["gone.de", "dangling symbolic link"]),
    ("evaluate", lambda tmp, t: [f"src_file={t['src']}", f"ref_file={tmp}"], ["is a directory"]),
    (
        "evaluate",
        lambda tmp, t: [f"src_file={t['src']}", f"ref_file={t['ref']}", f"out={_a_file(tmp)}"],
        ["out=", "not a writable folder"],
    ),  # fmt: skip
    (
        "evaluate",
        lambda tmp, t: [f"src_file={t['src']}", f"ref_file={t['ref']}", "out=/proc/no-such-dir"],
        ["out=/proc/no-such-dir", "not a writable folder"],
    ),  # fmt: skip
    ("align", lambda tmp, t: [f"src_file={t['src']}", f"out={_a_file(tmp)}"], ["out=", "not a writable folder"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "args", "words"), PATH_CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(PATH_CASES)]
)
def test_a_path_that_is_not_what_it_seems_is_one_line(trained, tmp_path, command, args, words):
    before = sorted(p.name for p in trained["ckpt"].parent.parent.rglob("*"))
    assert_user_error(run(command, f"checkpoint={trained['ckpt']}", *args(tmp_path, trained)), *words)
    assert sorted(p.name for p in trained["ckpt"].parent.parent.rglob("*")) == before  # the run is unchanged


def _lines(path, n: int, tmp, name: str):
    """The first ``n`` lines of ``path`` as a file ``name`` in ``tmp`` (so that two sides have equal length)."""
    out = tmp / name
    out.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:n]), encoding="utf-8")
    return out


def _gold(name: str, lang: str, n: int = 40):
    return lambda tmp: _lines(GOLD / name / f"test.{lang}", n, tmp, f"{name}.{lang}")


DE, EN, EN30 = _gold("europarl-de-en", "de"), _gold("europarl-de-en", "en"), _gold("europarl-de-en", "en", 30)
FR2, EN2 = _gold("hansards-en-fr", "fr"), _gold("hansards-en-fr", "en")  # of the other pair, en-fr
GOLD2 = f"gold={GOLD / 'hansards-en-fr' / 'gold.talp'}"
LANGUAGE_CASES = [
    ("evaluate", lambda t: [f"src_file={EN(t)}", f"ref_file={DE(t)}"], ["src_file=", "reads as en", "must be de"]),
    ("evaluate", lambda t: [f"src_file={DE(t)}", f"ref_file={DE(t)}"], ["ref_file=", "reads as de", "must be en"]),
    ("evaluate", lambda t: [f"src_file={DE(t)}", f"ref_file={FR2(t)}"], ["reads as fr", "de->en"]),
    ("evaluate", lambda t: [f"src_file={DE(t)}", f"ref_file={EN30(t)}"], ["line counts differ", "40 lines", "30"]),
    ("align", lambda t: [f"src_file={EN2(t)}", f"ref_file={FR2(t)}", GOLD2], ["src_file=", "reads as en", "be de"]),
    ("align", lambda t: [f"src_file={DE(t)}", f"ref_file={FR2(t)}", "target=ref"], ["reads as fr"]),
    ("evaluate", lambda t: [f"src_file={DE(t)}", f"ref_file={DE(t)}", "check_language=false"], None),  # asked for
]


@pytest.mark.slow
@pytest.mark.skipif(not GOLD.is_dir(), reason="needs ../shared/data/alignment (the gold sets' text files)")
@pytest.mark.parametrize(
    ("command", "args", "words"), LANGUAGE_CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(LANGUAGE_CASES)]
)
def test_a_file_of_another_length_or_language_pair_is_one_line(trained, tmp_path, command, args, words):
    before = sorted(p.name for p in trained["ckpt"].parent.parent.rglob("*"))
    proc = run(
        command, f"checkpoint={trained['ckpt']}", *args(tmp_path), f"out={tmp_path / 'out'}", "decode.max_len=10"
    )
    if words is None:
        assert proc.returncode == 0, proc.stderr[-1500:]
    else:
        assert_user_error(proc, *words)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # refused before any work
    assert sorted(p.name for p in trained["ckpt"].parent.parent.rglob("*")) == before
