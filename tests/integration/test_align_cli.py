"""`python -m pipeline.align` end to end: heatmaps, viewer, Pharaoh links, AER, bad input."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest
from clirun import assert_user_error, render_in_chromium, run

MALICIOUS = "<script>alert(1)</script> ein Hund & eine <b>Katze</b>"


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """Align 3 test sentences (one of them hostile markup) to SVG and PNG."""
    tmp = tmp_path_factory.mktemp("align")
    src = tmp / "src.de"
    lines = trained["src"].read_text().splitlines()[:3]
    src.write_text("\n".join([lines[0], MALICIOUS, lines[2]]) + "\n")
    out = tmp / "out"
    proc = run("align", f"checkpoint={trained['ckpt']}", f"src_file={src}", "formats=[png,svg]", f"out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.slow
def test_heatmaps_are_valid_images_one_per_sentence_and_format(exported):
    for i in range(3):
        assert (exported / f"sent{i:04d}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        root = ET.parse(exported / f"sent{i:04d}.svg").getroot()
        assert root.tag.endswith("svg")
    assert len((exported / "alignments.txt").read_text().splitlines()) == 3
    diag = json.loads((exported / "diagnostics.json").read_text())
    assert diag["ids"] == [0, 1, 2] and diag["level"] == "word"
    assert {"mean_entropy", "eos_mass", "monotonicity", "coverage"} <= diag["word_level"].keys()


@pytest.mark.slow
def test_viewer_escapes_untrusted_tokens(exported):
    page = (exported / "index.html").read_text()
    assert "<script>alert" not in page and "<b>Katze" not in page
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page


@pytest.mark.slow
def test_viewer_builds_the_gallery_in_a_real_browser(exported, tmp_path):
    dom, log = render_in_chromium(exported / "index.html", tmp_path)
    assert 'data-viewer="ready"' in dom, log[-2000:]
    assert 'data-sentences="3"' in dom and "data-viewer-error" not in dom
    assert dom.count('class="card"') == 3
    assert dom.count('class="cell"') > 3
    assert "Uncaught" not in log
    # the hostile sentence is on the page as text, and created no element
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<b>" not in dom


@pytest.mark.slow
def test_gold_gives_aer_against_the_diagonal_baseline(trained, tmp_path):
    src = tmp_path / "gold.de"
    ref = tmp_path / "gold.en"
    src.write_text("ein hund läuft .\nzwei kinder spielen im park .\n")
    ref.write_text("a dog runs .\ntwo children play in the park .\n")
    gold = tmp_path / "gold.talp"
    gold.write_text("1-1 2-2 3-3 4-4\n1-1 2-2 3-3 4p4 4-5 5-6 6-7\n")
    out = tmp_path / "out"
    proc = run(
        "align",
        f"checkpoint={trained['ckpt']}",
        f"src_file={src}",
        f"ref_file={ref}",
        f"gold={gold}",
        "num=1",
        f"out={out}",
        "extraction.rule=argmax",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    aer = json.loads((out / "aer.json").read_text())
    assert aer["sentences"] == 2 and aer["target"] == "ref"
    assert aer["model"]["links"] == 4 + 7  # argmax: one link per reference word
    assert 0.0 <= aer["model"]["aer"] <= 1.0
    # the diagonal baseline hits every sure link of these monotone sentences but one
    assert aer["diagonal_baseline"]["aer"] < 0.2
    assert len((out / "alignments.txt").read_text().splitlines()) == 2  # every gold line
    assert (out / "sent0000.png").exists() and not (out / "sent0001.png").exists()
    assert "AER" in proc.stdout


@pytest.mark.slow
def test_bad_inputs_exit_2_with_one_line(trained, trained_baseline, tmp_path):
    assert_user_error(run("align", f"checkpoint={trained_baseline}"), "without attention", "nothing to plot")
    short = tmp_path / "gold.talp"
    short.write_text("1-1\n")
    assert_user_error(
        run("align", f"checkpoint={trained['ckpt']}", f"src_file={trained['src']}", f"gold={short}"), "ref_file"
    )
    assert_user_error(
        run(
            "align",
            f"checkpoint={trained['ckpt']}",
            f"src_file={trained['src']}",
            f"ref_file={trained['ref']}",
            f"gold={short}",
        ),
        "1 lines",
        "40 sentences",
    )
    assert_user_error(run("align", f"checkpoint={trained['ckpt']}", "ids=[0,999]"), "999", "out of range")
    src, ref, gold = tmp_path / "s.de", tmp_path / "r.en", tmp_path / "g.talp"
    src.write_text("ein hund .\n")
    ref.write_text("a dog .\n")
    gold.write_text("1-1 2-7\n")
    args = [f"checkpoint={trained['ckpt']}", f"src_file={src}", f"ref_file={ref}", f"gold={gold}"]
    assert_user_error(run("align", *args), f"{gold}:1", "2-7", "outside")
    gold.write_text("1-1 2x2\n")
    assert_user_error(run("align", *args), f"{gold}:1", "bad link '2x2'")


def gold_pair(tmp_path):
    """Two gold sentence pairs, their files and links (1-indexed talp)."""
    src, ref, gold = tmp_path / "gold.de", tmp_path / "gold.en", tmp_path / "gold.talp"
    src.write_text("ein hund läuft .\nzwei kinder spielen im park .\n")
    ref.write_text("a dog runs .\ntwo children play in the park .\n")
    gold.write_text("1-1 2-2 3-3 4-4\n1-1 2-2 3-3 4p4 4-5 5-6 6-7\n")
    return [f"src_file={src}", f"ref_file={ref}", f"gold={gold}"]


def without_eflomal(tmp_path) -> dict:
    """An environment in which ``import eflomal`` fails, as on a machine without it."""
    fake = tmp_path / "no_eflomal" / "eflomal"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named eflomal')\n")
    return {**os.environ, "PYTHONPATH": str(fake.parent)}


@pytest.mark.slow
def test_method_both_scores_eflomal_beside_the_attention(trained, tmp_path):
    pytest.importorskip("eflomal")
    out = tmp_path / "out"
    proc = run("align", "method=both", f"checkpoint={trained['ckpt']}", *gold_pair(tmp_path), "num=1", f"out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    statistical = json.loads((out / "eflomal" / "aer.json").read_text())
    assert statistical["training_pairs"] == 300 and statistical["sentences"] == 2
    assert {"model", "forward", "reverse", "intersection", "diagonal_baseline"} <= statistical.keys()
    assert {"select", "report"} <= statistical["model"].keys()
    for name in ("alignments.txt", "alignments.forward.txt", "alignments.reverse.txt"):
        assert len((out / "eflomal" / name).read_text().splitlines()) == 2
    assert (out / "aer.json").exists()
    assert "eflomal (grow-diag-final-and): AER" in proc.stdout


@pytest.mark.slow
def test_a_missing_eflomal_warns_in_one_line_and_the_attention_results_stand(trained, tmp_path):
    out = tmp_path / "out"
    args = ["method=both", f"checkpoint={trained['ckpt']}", *gold_pair(tmp_path), "num=1", f"out={out}"]
    proc = run("align", *args, env=without_eflomal(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "eflomal is not installed" in line]
    assert len(warnings) == 1 and "pip install eflomal" in warnings[0]
    assert json.loads((out / "aer.json").read_text())["sentences"] == 2
    assert not (out / "eflomal").exists()


@pytest.mark.slow
def test_method_eflomal_without_eflomal_is_one_line(tmp_path):
    proc = run(
        "align", "method=eflomal", *gold_pair(tmp_path), f"out={tmp_path / 'out'}", env=without_eflomal(tmp_path)
    )
    assert_user_error(proc, "eflomal is not installed", "pip install eflomal")


@pytest.mark.slow
def test_a_reverse_model_gives_the_second_direction(trained, trained_reverse, tmp_path):
    gold = gold_pair(tmp_path)
    outs = {}
    for combine in ("intersection", "union"):
        out = tmp_path / combine
        proc = run(
            "align", f"checkpoint={trained['ckpt']}", f"reverse_checkpoint={trained_reverse}", *gold,
            f"extraction.combine={combine}", "extraction.rule=argmax", "num=1", f"out={out}",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[combine] = json.loads((out / "aer.json").read_text())
    inter, union = outs["intersection"]["model"]["links"], outs["union"]["model"]["links"]
    assert inter <= 4 + 7 <= union  # one argmax link per word each way: the intersection has fewer, the union more
    assert outs["union"]["extraction"]["combine"] == "union"


@pytest.mark.slow
def test_a_reverse_model_of_the_same_direction_is_one_line(trained, tmp_path):
    proc = run("align", f"checkpoint={trained['ckpt']}", f"reverse_checkpoint={trained['ckpt']}", *gold_pair(tmp_path))
    assert_user_error(proc, "translates de->en", "the reverse of")
