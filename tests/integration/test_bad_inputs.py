"""The table of bad inputs a user can give the commands.

Each row: the command, its arguments, and the words its one-line error must contain.
CONFIG_CASES need no data (the config is refused before anything is read); CASES are
built from a tiny trained run.  Corpus errors (mismatched line counts, invalid UTF-8, a
10-MB line, NUL bytes, an empty file, a missing split, an unknown language, a vocabulary
too large) have their own tests in tests/unit/data/test_corpus.py and
tests/integration/test_prepare_cli.py, align's gold-file errors in test_align_cli.py.
Every case must exit 2 with exactly one ``error:`` line and no traceback
(tests/clirun.py:assert_user_error).
"""

from __future__ import annotations

import pytest
import torch
from clirun import assert_user_error, run

from pipeline.training.checkpoint import load_checkpoint


def _not_a_checkpoint(tmp, trained):
    path = tmp / "notes.pt"
    path.write_text("just some text\n")
    return path


def _foreign_dict(tmp, trained):
    path = tmp / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    return path


def _other_model_type(tmp, trained):
    payload = load_checkpoint(trained["ckpt"])
    payload["config"]["model"]["context"] = "fixed"  # weights of RNNsearch, config of the baseline
    path = tmp / "mismatch.pt"
    torch.save(payload, path)
    return path


CONFIG_CASES = [
    ("train", ["train.no_such_knob=1"], ["train.no_such_knob", "not in 'TrainConfig'", "--cfg job"]),
    ("train", ["train.max_steps=lots"], ["train.max_steps=lots", "could not be converted to Integer"]),
    ("train", ["model=transformer"], ["model/transformer", "available: bahdanau, baseline"]),
    ("train", ["model.encoder.rnn=transformer"], ["model.encoder.rnn", "expected one of [gru, lstm]"]),
    ("train", ["model.encoder.hidden_dim=0"], ["model.encoder.hidden_dim=0", "must be >= 1"]),
    ("train", ["train.max_minutes=-5"], ["train.max_minutes=-5.0", "must be > 0"]),
    ("train", ["batch.max_tokens=0"], ["batch.max_tokens=0", "must be >= 1"]),
    ("train", ["model.dropout=1.5"], ["model.dropout=1.5", "in [0, 1)"]),
    ("evaluate", ["checkpoint=x.pt", "decode=beam", "decode.beam_size=0"], ["decode.beam_size=0", "must be >= 1"]),
    ("prepare", ["tokenizer.vocab_size=-1"], ["tokenizer.vocab_size=-1", "must be >= 8"]),
    ("report", ["runs=[a,b]", "n_bootstrap=0"], ["n_bootstrap=0", "must be >= 1"]),
]


@pytest.mark.parametrize("command,args,words", CONFIG_CASES, ids=[f"{c}-{a[-1]}" for c, a, _ in CONFIG_CASES])
def test_bad_config_gives_one_line_and_exit_2(command, args, words):
    assert_user_error(run(command, *args), *words)


CASES = [
    ("evaluate", lambda tmp, t: [f"checkpoint={tmp / 'missing.pt'}"], ["does not exist"]),
    ("evaluate", lambda tmp, t: [f"checkpoint={t['ckpt'].parent}"], ["is a directory", "last.pt"]),
    ("evaluate", lambda tmp, t: [f"checkpoint={_not_a_checkpoint(tmp, t)}"], ["notes.pt", "corrupt"]),
    ("evaluate", lambda tmp, t: [f"checkpoint={_foreign_dict(tmp, t)}"], ["not a checkpoint of this pipeline"]),
    ("evaluate", lambda tmp, t: [f"checkpoint={_other_model_type(tmp, t)}"], ["mismatch.pt", "does not match"]),
    (
        "evaluate",
        lambda tmp, t: [f"checkpoint={t['ckpt']}", f"src_file={t['src']}"],
        ["give both src_file and ref_file"],
    ),
    ("translate", lambda tmp, t: [f"checkpoint={t['ckpt']}", f"input={tmp / 'none.txt'}"], ["none.txt"]),
    ("align", lambda tmp, t: [f"checkpoint={t['ckpt']}", "target=ref", f"src_file={t['src']}"], ["ref_file"]),
    ("report", lambda tmp, t: [f"runs=[{tmp / 'no-run'}]"], ["no-run", "no checkpoints/last.pt"]),
    ("report", lambda tmp, t: [f"runs=[{t['ckpt'].parent.parent}]", "split=val"], ["val.beam5-lp0.6.json not found"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("command,args,words", CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_bad_input_gives_one_line_and_exit_2(command, args, words, trained, tmp_path):
    assert_user_error(run(command, *args(tmp_path, trained)), *words)
