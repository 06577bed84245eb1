"""The table of bad inputs a user can give the evaluate, align and report commands.

Each row: the command, its arguments (built from a tiny trained run), and the words its
one-line error must contain.  Every case must exit 2 with exactly one ``error:`` line and no
traceback (tests/clirun.py:assert_user_error).
"""

from __future__ import annotations

import pytest
import torch
from clirun import assert_user_error, run

from pipeline.checkpoint import load_checkpoint


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
