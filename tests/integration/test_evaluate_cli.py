"""`python -m pipeline.evaluate` and `pipeline.translate` end to end on a tiny checkpoint."""

from __future__ import annotations

import gzip
import json
import pickle
import subprocess
import sys

import pytest
import sacrebleu
import torch
from clirun import assert_user_error, run
from tinydata import REPO

from pipeline.training.checkpoint import load_checkpoint

KEYS = {
    "bleu",
    "chrf",
    "ter",
    "signatures",
    "n_sentences",
    "decode",
    "sentences_per_second",
    "checkpoint",
    "step",
    "by_length",
}


@pytest.mark.slow
def test_evaluate_split_writes_json_and_hypotheses(trained):
    out = trained["tmp"] / "out"
    proc = run(
        "evaluate", f"checkpoint={trained['ckpt']}", "split=test", f"out={out}", "n_bootstrap=50", "min_bucket=10"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "test.greedy.json").read_text())
    assert KEYS <= report.keys()
    hyps = (out / "test.greedy.hyp.txt").read_text().splitlines()
    assert len(hyps) == report["n_sentences"] == 40
    refs = [line.rstrip("\n") for line in gzip.open(trained["tmp"] / "m30k" / "test_2016_flickr.en.gz", "rt")]
    assert report["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert report["step"] == 8 and report["signatures"]["bleu"].startswith("nrefs:1")
    assert sum(b["n"] for b in report["by_length"]) == 40 and all(b["n"] >= 10 for b in report["by_length"])
    assert "BLEU" in proc.stdout and "source words" in proc.stdout


@pytest.mark.slow
def test_evaluate_files_with_beam_and_translate_agree(trained):
    out = trained["tmp"] / "out2"
    proc = run(
        "evaluate",
        f"checkpoint={trained['ckpt']}",
        f"src_file={trained['src']}",
        f"ref_file={trained['ref']}",
        "decode=beam",
        "decode.beam_size=3",
        f"out={out}",
        "n_bootstrap=1",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    hyp_file = out / "src.de.beam3-lp0.6.hyp.txt"
    hyps = hyp_file.read_text().splitlines()
    assert len(hyps) == 40 and json.loads((out / "src.de.beam3-lp0.6.json").read_text())["decode"]["beam_size"] == 3
    translated = run(
        "translate",
        f"checkpoint={trained['ckpt']}",
        "decode=beam",
        "decode.beam_size=3",
        stdin=trained["src"].read_text(),
    )
    assert translated.returncode == 0, translated.stderr[-2000:]
    assert translated.stdout.splitlines() == hyps


@pytest.mark.slow
def test_evaluate_bad_inputs_exit_2_and_leave_no_partial_files(trained, tmp_path):
    ckpt = trained["ckpt"]
    assert_user_error(run("evaluate", f"checkpoint={tmp_path / 'none.pt'}"), "does not exist")
    torn = tmp_path / "torn.pt"
    torn.write_bytes(ckpt.read_bytes()[:5000])
    assert_user_error(run("evaluate", f"checkpoint={torn}"), str(torn), "corrupt")
    short = tmp_path / "short.en"
    short.write_text("one\ntwo\n")
    out = tmp_path / "out"
    assert_user_error(
        run("evaluate", f"checkpoint={ckpt}", f"src_file={trained['src']}", f"ref_file={short}", f"out={out}"),
        "40 lines",
        "2",
    )
    empty = tmp_path / "empty.de"
    empty.write_text("")
    assert_user_error(
        run("evaluate", f"checkpoint={ckpt}", f"src_file={empty}", f"ref_file={empty}", f"out={out}"), "empty"
    )
    future = tmp_path / "future.pt"
    payload = load_checkpoint(ckpt)
    payload["format_version"] = 99
    torch.save(payload, future)
    assert_user_error(run("evaluate", f"checkpoint={future}"), "format version 99")
    assert not out.exists() or not any(out.iterdir())


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


@pytest.mark.slow
def test_checkpoint_needing_pickled_code_is_refused_and_never_runs(tmp_path):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"model": _Payload(), "format_version": 1}, f)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.evaluate", f"checkpoint={evil}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert_user_error(proc, str(evil))
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


@pytest.mark.slow
def test_int8_decoding_writes_its_own_results_and_refuses_what_it_cannot_do(trained):
    out = trained["tmp"] / "out_int8"
    args = [f"checkpoint={trained['ckpt']}", "split=test", f"out={out}", "n_bootstrap=1"]
    assert run("evaluate", *args).returncode == 0
    proc = run("evaluate", *args, "decode.quantize=int8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    fp32 = json.loads((out / "test.greedy.json").read_text())
    int8 = json.loads((out / "test.greedy-int8.json").read_text())
    assert int8["decode"]["quantize"] == "int8" and fp32["decode"]["quantize"] == "none"
    assert int8["n_sentences"] == 40 and len((out / "test.greedy-int8.hyp.txt").read_text().splitlines()) == 40
    translated = run("translate", f"checkpoint={trained['ckpt']}", "decode.quantize=int8", stdin="ein Hund\n\nläuft\n")
    assert translated.returncode == 0, translated.stderr[-2000:]
    assert len(translated.stdout.splitlines()) == 3
    bf16 = run("translate", f"checkpoint={trained['ckpt']}", "decode.quantize=int8", "precision=bf16", stdin="x\n")
    assert_user_error(bf16, "precision=bf16", "decode.quantize")
    assert_user_error(run("align", f"checkpoint={trained['ckpt']}", "decode.quantize=int8"), "decode.quantize")


@pytest.mark.slow
def test_average_then_an_ensemble_with_the_baseline_evaluates_and_translates(trained, trained_baseline, tmp_path):
    avg = tmp_path / "avg.pt"
    proc = run("average", f"run_dir={trained['ckpt'].parent.parent}", "last=2", f"out={avg}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "averaged 2 checkpoints (last=2; steps [4, 8]" in proc.stdout
    members = f"checkpoint=[{avg},{trained_baseline}]"
    out = tmp_path / "eval"
    proc = run("evaluate", members, f"src_file={trained['src']}", f"ref_file={trained['ref']}", f"out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "src.de.greedy.ensemble2.json").read_text())
    assert report["checkpoint"] == [str(avg.resolve()), str(trained_baseline.resolve())]
    assert len((out / "src.de.greedy.ensemble2.hyp.txt").read_text().splitlines()) == report["n_sentences"] == 40
    proc = run("translate", members, stdin="ein Hund .\n\nzwei Männer .\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.splitlines()) == 3


@pytest.mark.slow
def test_an_ensemble_of_other_language_pairs_is_one_line(trained, trained_reverse):
    proc = run("translate", f"checkpoint=[{trained['ckpt']},{trained_reverse}]", stdin="ein Hund .\n")
    assert_user_error(proc, "data.src_lang=en", "ensemble checkpoints of one language pair")


def _translate_process(ckpt, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.translate", f"checkpoint={ckpt}", "threads=1", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_translate_streams_stdin_one_line_out_per_line_in_whatever_the_bytes(trained, tmp_path):
    proc = _translate_process(trained["ckpt"], "input=-", "attention=jsonl", f"attention_file={tmp_path / 'a.jsonl'}")
    proc.stdin.write(b"ein Hund l\xc3\xa4uft .\n")
    proc.stdin.flush()
    first = proc.stdout.readline()  # answered while stdin is still open: streamed, not read to the end
    assert first.endswith(b"\n") and first.strip()
    hostile = [
        b"\r\n",
        b"   \n",
        b"caf\xe9 \xff\xfe\n",
        b"zwei\xe2\x80\xa8M\xc3\xa4nner\r\n",
        "🐕 " * 300 + "\n",
        b"ohne Ende",
    ]
    proc.stdin.write(b"".join(h if isinstance(h, bytes) else h.encode() for h in hostile))
    proc.stdin.close()
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()[-2000:]
    lines = (first + rest).split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == 1 + len(hostile)  # one line out per line in
    assert lines[1] == b"" and lines[2] == b""  # empty and blank lines stay empty
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["line"] for r in records] == list(range(1, 8))
    first_record = records[0]
    assert first_record["src"] == "ein Hund läuft ." and first_record["src_pieces"][-1] == "</s>"
    weights = first_record["weights"]
    assert len(weights) == len(first_record["tgt_pieces"]) and len(weights[0]) == len(first_record["src_pieces"])
    assert all(abs(sum(row) - 1) < 1e-3 for row in weights)
