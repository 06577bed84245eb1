"""Checkpoint averaging: ``python -m pipeline.average run_dir=DIR last=N | best=N``.

Why: the mean of the parameters of the last few checkpoints of a run sits nearer the
centre of the region the optimizer wanders in than any one of them, and usually
translates better at no training cost (Junczys-Dowmunt et al. 2016; Vaswani et al. 2017;
fairseq's ``average_checkpoints.py``, ``sockeye-average``).  ``last=N`` takes the newest
``N`` step files, ``best=N`` the ``N`` with the highest validation BLEU.

The averaged file is a checkpoint like any other for evaluate, translate and align: it
rebuilds its model and tokenizer by itself.  It holds no optimizer state, so no run
resumes from it, and it records which steps it averages (``averaged``).  The average is
taken over the weights each checkpoint decodes with (its EMA weights when validation used
them, see :mod:`pipeline.training.ema`), accumulated in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.errors import UserError
from pipeline.training.checkpoint import STEP_GLOB, decode_weights, load_checkpoint, save_atomic
from pipeline.training.run_lock import RunLock
from pipeline.training.runlog import read_metrics


@dataclass
class Candidate:
    """A step checkpoint of a run and the validation BLEU at its step (None: not validated there)."""

    path: Path
    step: int
    bleu: float | None


def candidates(run_dir: Path) -> list[Candidate]:
    """The run's step files (``checkpoints/step-*.pt``), oldest first, with their validation BLEU.

    The BLEU comes from the checkpoint's progress (``last_eval_bleu`` when it was saved right
    after a validation), else from ``metrics.jsonl``'s validation record of that step.
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        raise UserError(f"run_dir {run_dir} has no checkpoints/ folder; train it first (python -m pipeline.train)")
    logged = {r["step"]: r["bleu"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r.get("kind") == "val"}
    out = []
    for path in sorted(ckpt_dir.glob(STEP_GLOB)):
        progress = load_checkpoint(path, mmap=True).get("progress", {})  # the weights are read once, to average
        step = int(progress.get("step", int(path.stem.split("-")[1])))
        bleu = progress.get("last_eval_bleu") if progress.get("last_eval_step") == step else None
        out.append(Candidate(path, step, bleu if bleu is not None and bleu >= 0 else logged.get(step)))
    return out


def select(found: list[Candidate], last: int | None, best: int | None, run_dir: Path) -> list[Candidate]:
    """The ``last`` newest or the ``best`` highest-BLEU candidates (exactly one of them is given)."""
    if (last is None) == (best is None):
        raise UserError("give exactly one of last=N (the newest N step checkpoints) or best=N (the N best by val BLEU)")
    n = last if last is not None else best
    assert n is not None
    if n < 1:
        raise UserError(f"{'last' if last is not None else 'best'}={n}: give a number of checkpoints >= 1")
    pool = found if last is not None else [c for c in found if c.bleu is not None]
    if len(pool) < n:
        what = "step checkpoints" if last is not None else "step checkpoints with a validation BLEU"
        raise UserError(
            f"{run_dir} has {len(pool)} {what}, fewer than the {n} asked for; ask for fewer, or train with a larger "
            "train.keep_checkpoints (and train.checkpoint_every) so that more are kept"
        )
    if last is not None:
        return pool[-n:]
    ranked = sorted(pool, key=lambda c: (-c.bleu, -c.step))  # type: ignore[operator]
    return sorted(ranked[:n], key=lambda c: c.step)


def average_weights(paths: list[Path]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(the newest checkpoint, the element-wise mean of every checkpoint's decoding weights).

    All checkpoints must come from one model and tokenizer; integer tensors (none in these
    models today) must agree and are kept as they are.
    """
    sums: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    newest: dict = {}
    for i, path in enumerate(paths):
        ckpt = load_checkpoint(path)
        weights = decode_weights(ckpt, path)
        if i == 0:
            newest, dtypes = ckpt, {k: v.dtype for k, v in weights.items()}
            sums = {k: v.double() if v.is_floating_point() else v.clone() for k, v in weights.items()}
            continue
        _check_same_model(newest, ckpt, paths[0], path)
        for key, value in weights.items():
            if value.is_floating_point():
                sums[key] += value.double()
            elif not torch.equal(sums[key], value):
                raise UserError(f"{path}: integer tensor {key} differs from {paths[0]}'s; these cannot be averaged")
        newest = ckpt
    mean = {k: (v / len(paths)).to(dtypes[k]) if v.is_floating_point() else v for k, v in sums.items()}
    return newest, mean


def _check_same_model(a: dict, b: dict, path_a: Path, path_b: Path) -> None:
    if a["config"]["model"] != b["config"]["model"]:
        raise UserError(f"{path_b} has another model config than {path_a}; average checkpoints of one run only")
    if a["tokenizer"] != b["tokenizer"]:
        raise UserError(f"{path_b} has another tokenizer than {path_a}; average checkpoints of one run only")
    if a["model"].keys() != b["model"].keys():
        raise UserError(f"{path_b} has other parameters than {path_a}; average checkpoints of one run only")


def average(run_dir: str | Path, last: int | None = None, best: int | None = None, out: str | None = None) -> dict:
    """Write the averaged checkpoint; returns what it holds (``path``, ``steps``, ``bleu`` of each)."""
    run_dir = Path(run_dir)
    with RunLock(run_dir, "average"):  # training must not prune or replace the step files meanwhile
        return _average(run_dir, last, best, out)


def _average(run_dir: Path, last: int | None, best: int | None, out: str | None) -> dict:
    chosen = select(candidates(run_dir), last, best, run_dir)
    newest, weights = average_weights([c.path for c in chosen])
    how = f"last={last}" if last is not None else f"best={best}"
    path = Path(out) if out else run_dir / "checkpoints" / f"average-{how.replace('=', '')}.pt"
    averaged = {"selection": how, "steps": [c.step for c in chosen], "val_bleu": [c.bleu for c in chosen]}
    payload = {
        "model": weights,
        "decode_weights": "model",
        "averaged": averaged,
        "config": newest["config"],
        "tokenizer": newest["tokenizer"],
        "step": newest["step"],
        "params": newest.get("params", 0),
        "progress": newest.get("progress", {}),
    }
    save_atomic(payload, path)
    return {"path": str(path), **averaged}
