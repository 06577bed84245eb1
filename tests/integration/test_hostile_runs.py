"""A run directory or a data cache changed under a command (issue #34, item 2).

Each row of RUN_CASES: a change made to a copy of a finished run (trained by the CLI, with a val
evaluation so that a report can be written), the command then run on it, and what must happen:
``("ok", None)``, it succeeds (and, for ``train``, leaves every file of the run readable again),
or ``("error", words)``, exit 2 with one ``error:`` line holding ``words``, no traceback, and no
file of the run changed.  CACHE_CASES damage a copy of the data cache: the cache is derived
data, so prepare rebuilds what is damaged (saying so) instead of failing.  Add a case with one
line.

Cases tried: 21 changes of a run in 18 rows (one row damages four files at once, for one resume)
and 2 cache damages; docs/reliability.md lists what each promises.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import yaml
from clirun import assert_user_error, run
from tinydata import TINY_OVERRIDES

from pipeline.training.checkpoint import load_checkpoint

RESULT = "eval/val.beam5-lp0.6.json"
HYPS = "eval/val.beam5-lp0.6.hyp.txt"


@pytest.fixture(scope="module")
def cli_run(trained, tmp_path_factory):
    """A 6-step RNNsearch trained by ``python -m pipeline.train`` (so that the same overrides resume
    it), with its val evaluation, and the data and cache it was trained on."""
    tmp = tmp_path_factory.mktemp("hostile-run")
    proc = run("train", *TINY_OVERRIDES, *_data(trained["data"], tmp / "cache"), f"run_dir={tmp / 'run'}")
    assert proc.returncode == 0, proc.stderr[-1500:]
    ckpt = tmp / "run" / "checkpoints" / "best.pt"
    proc = run("evaluate", f"checkpoint={ckpt}", "split=val", "decode=beam", "n_bootstrap=10")
    assert proc.returncode == 0, proc.stderr[-1500:]
    return {"run": tmp / "run", "data": trained["data"], "cache": tmp / "cache"}


def _data(corpus, cache) -> list[str]:
    return [f"data.local_dir={corpus}", f"data.cache_dir={cache}"]


def _replace(path, data: bytes) -> None:
    """Write ``data`` as a new file in ``path``'s place (a step file and last.pt may be hard links)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def truncate(name: str, keep: int):
    return lambda run, other: _replace(run / name, (run / name).read_bytes()[:keep])


def replace_with(name: str, data: bytes):
    return lambda run, other: _replace(run / name, data)


def from_other_run(name: str, theirs: str | None = None):
    """``name`` replaced by the other run's ``theirs`` (default: its own ``name``)."""
    return lambda run, other: _replace(run / name, (other / (theirs or name)).read_bytes())


def drop_key(name: str, key: str):
    def change(run, other):
        result = json.loads((run / name).read_text())
        del result[key]
        _replace(run / name, json.dumps(result).encode())

    return change


def torn_last_line(run, other):
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"kind": "val", "step": 99, "bl')


def damage_run_files(run, other):
    """config.yaml of another run, manifest.json, the tokenizer copy and metrics.jsonl's last line torn."""
    from_other_run("config.yaml")(run, other)
    truncate("manifest.json", 40)(run, other)
    truncate("tokenizer/joint.model", 500)(run, other)
    torn_last_line(run, other)


def unchanged(run, other):
    pass


def train(*extra):
    """``train`` resuming the run to step 9, on a copy of its cache (a resume may add to a cache)."""

    def command(cli, run):
        shutil.copytree(cli["cache"], run.parent / "cache")
        return (
            "train",
            *TINY_OVERRIDES,
            *_data(cli["data"], run.parent / "cache"),
            f"run_dir={run}",
            "train.max_steps=9",
            *extra,
        )

    return command


def report(cli, run):
    return ("report", f"runs=[{run}]", f"out={run.parent / 'report'}", "split=val", "n_bootstrap=10")


def average(how: str):
    return lambda cli, run: ("average", f"run_dir={run}", how, f"out={run.parent / 'average.pt'}")


def evaluate(cli, run):
    return ("evaluate", f"checkpoint={run / 'checkpoints' / 'best.pt'}", "split=val", f"out={run.parent / 'eval'}")


def error(*words: str) -> tuple:
    return ("error", list(words))


BINARY = bytes(range(128, 256)) * 3
OK = ("ok", None)
LAST, STEP6 = "checkpoints/last.pt", "checkpoints/step-00000006.pt"
RUN_CASES = [
    ("run-files-damaged", damage_run_files, train(), OK),  # the checkpoint decides what the run is; all rewritten
    ("config-truncated", truncate("config.yaml", 200), report, OK),  # not read: the checkpoint's config is
    ("metrics-torn-last-line", torn_last_line, average("best=2"), OK),
    ("metrics-not-utf8", replace_with("metrics.jsonl", BINARY), report, OK),  # skipped with a warning
    ("metrics-not-utf8", replace_with("metrics.jsonl", BINARY), train(), OK),
    ("manifest-truncated", truncate("manifest.json", 40), report, error("manifest.json", "not valid JSON")),
    ("tokenizer-truncated", truncate("tokenizer/joint.model", 500), evaluate, OK),  # the checkpoint holds its own
    ("result-truncated", truncate(RESULT, 100), report, error(RESULT, "not valid JSON", "re-create it")),
    ("result-not-utf8", replace_with(RESULT, BINARY), report, error(RESULT, "not UTF-8", "pipeline.evaluate")),
    ("result-a-list", replace_with(RESULT, b"[1, 2]\n"), report, error("holds a JSON list", "re-create it")),
    ("result-without-bleu", drop_key(RESULT, "bleu"), report, error("lacks bleu", "re-create it")),
    ("hypotheses-truncated", truncate(HYPS, 10), report, error("hypotheses for 40 val", "pipeline.evaluate")),
    ("last-truncated", truncate(LAST, 1000), report, error("last.pt is corrupt or truncated")),
    ("last-of-another-run", from_other_run(LAST), report, error("scores model", "another run")),
    ("last-of-another-run", from_other_run(LAST), train(), error("different model (model.")),
    ("step-of-another-run", from_other_run(STEP6, LAST), average("last=2"), error("another model config")),
    ("another-model-resumed", unchanged, train("model=baseline"), error("model.context=attention vs fixed now")),
    ("another-pair-resumed", unchanged, train("data.src_lang=en", "data.tgt_lang=de"), error("data.src_lang=de")),
]


def _digests(run_dir) -> dict:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _readable(run_dir) -> None:
    """After train: the run's files are whole again (what a later report or resume reads)."""
    yaml.safe_load((run_dir / "config.yaml").read_text())
    json.loads((run_dir / "manifest.json").read_text())
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        json.loads(line)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["progress"]["step"] == 9


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "change", "command", "expected"), RUN_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(RUN_CASES)]
)
def test_a_run_changed_under_a_command_is_used_or_refused_in_one_line(
    cli_run, trained_baseline, tmp_path, name, change, command, expected
):
    run_dir = tmp_path / "run"
    shutil.copytree(cli_run["run"], run_dir)
    change(run_dir, trained_baseline.parent.parent)
    before = _digests(run_dir)
    args = command(cli_run, run_dir)
    proc = run(*args)
    if expected[0] == "error":
        assert_user_error(proc, *expected[1])
        assert _digests(run_dir) == before, "a refused command changed the run"
        return
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    if args[0] == "train":
        _readable(run_dir)
    elif args[0] != "average":
        assert _digests(run_dir) == before, "a reader changed the run"


CACHE_CASES = [
    ("tokenizer", "spm/*.model"),
    ("encoded-train", "encoded/train-*.arrow"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "pattern"), CACHE_CASES, ids=[c[0] for c in CACHE_CASES])
def test_a_damaged_cache_file_is_rebuilt_with_a_warning(cli_run, tmp_path, name, pattern):
    cache = tmp_path / "cache"
    shutil.copytree(cli_run["cache"], cache)
    (damaged,) = cache.glob(pattern)
    _replace(damaged, damaged.read_bytes()[:1000])
    data = _data(cli_run["data"], cache)
    proc = run("prepare", *data, "tokenizer.vocab_size=300")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert f"{damaged} is damaged" in proc.stdout + proc.stderr
    again = run("prepare", *data, "tokenizer.vocab_size=300")  # rebuilt whole: reused as it is now
    assert again.returncode == 0 and "is damaged" not in again.stdout + again.stderr, again.stderr[-1500:]
