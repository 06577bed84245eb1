"""What the report adds beside each system's main row: its scores on every test set, and the
decodings of the same system by other weights (checkpoint average, EMA, ensemble).

Both are read from the evaluations a run directory already holds (``<run>/eval/``), named by
:mod:`pipeline.evaluation.evaluate`: ``{set}.{decode}.json`` for a test set, and
``{split}.{decode}.{variant}.json`` for a variant (``ema``, ``model``, ``average-last5``,
``ensemble2``, ...).  A variant is compared with the system's single model (its first run's
main evaluation) by sacrebleu's paired bootstrap resampling, and its decoding time with that
model's.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

from pipeline.data.textfile import read_lines
from pipeline.errors import UserError
from pipeline.files import read_json_object


def variant_label(suffix: str) -> str:
    """A reader's name for a result-name suffix (see :func:`pipeline.decoding.translate.checkpoint_tag`)."""
    if suffix == "ema":
        return "EMA weights"
    if suffix == "model":
        return "trained weights"
    if m := re.fullmatch(r"ensemble(\d+)", suffix):
        return f"ensemble of {m.group(1)}"
    if m := re.fullmatch(r"average-(last|best)(\d+)", suffix):
        return f"average of the {'last' if m.group(1) == 'last' else 'best'} {m.group(2)} checkpoints"
    return suffix


def _read(path: Path) -> dict:
    return read_json_object(path, "re-run the evaluation that wrote it", ("bleu",))


def variant_scores(
    run_dir: Path, split: str, tag: str, single: dict, single_hyps: list[str], refs: list[str], n: int
) -> list[dict]:
    """The single model's scores, then each variant evaluation of ``run_dir`` on ``split`` with decoding
    ``tag`` against it; [] when the run has no variant evaluation."""
    prefix = f"{split}.{tag}."
    out = [_entry("single", "single model (first run)", single, single, None)]
    for path in sorted((Path(run_dir) / "eval").glob(f"{prefix}*.json")):
        suffix = path.name[len(prefix) : -len(".json")]
        result = _read(path)
        hyps = read_lines(path.with_name(f"{prefix}{suffix}.hyp.txt"))
        if len(hyps) != len(refs):
            raise UserError(f"{path}: {len(hyps)} hypotheses for {len(refs)} {split} sentences; re-run its evaluation")
        _, sig = PairedTest(
            [("single", single_hyps), (suffix, hyps)], {"bleu": BLEU()}, [refs], test_type="bs", n_samples=n
        )()
        column = next(k for k in sig if k != "System")
        out.append(_entry(suffix, variant_label(suffix), result, single, float(sig[column][1].p_value)))
    return out if len(out) > 1 else []


def _entry(variant: str, label: str, result: dict, single: dict, p_value: float | None) -> dict:
    return {
        "variant": variant,
        "label": label,
        **{k: result.get(k) for k in ("bleu", "bleu_ci95", "chrf", "chrf_ci95", "ter", "checkpoint", "step")},
        "delta_bleu": result["bleu"] - single["bleu"],
        "p_value_vs_single": p_value,
        "decode_time_vs_single": _time_ratio(single, result),
    }


def _time_ratio(single: dict, other: dict) -> float | None:
    a, b = single.get("sentences_per_second"), other.get("sentences_per_second")
    return None if not a or not b else a / b


def test_set_scores(systems: dict[str, list[Any]], names: list[str], tag: str, explicit: bool) -> dict[str, dict]:
    """``{test set: {system: {bleu, bleu_ci95, chrf, n_sentences, seeds}}}``, BLEU and chrF the mean over seeds.

    Sets named explicitly (``report.test_sets``) must have been evaluated for every system;
    otherwise a set is shown where each system has at least one run evaluated on it.
    """
    table: dict[str, dict] = {}
    for name in names:
        row = {}
        for system, runs in systems.items():
            found = [_read(p) for r in runs if (p := r.dir / "eval" / f"{name}.{tag}.json").is_file()]
            if not found:
                if explicit:
                    raise UserError(
                        f"{runs[0].dir} has no evaluation on {name} ({name}.{tag}.json); run python -m "
                        f"pipeline.evaluate checkpoint={runs[0].dir}/checkpoints/best.pt split={name}, or drop it "
                        "from report.test_sets"
                    )
                row = {}
                break
            row[system] = {
                "bleu": statistics.fmean(f["bleu"] for f in found),
                "bleu_ci95": found[0].get("bleu_ci95"),
                "chrf": statistics.fmean(f["chrf"] for f in found),
                "n_sentences": found[0]["n_sentences"],
                "seeds": len(found),
            }
        if row:
            table[name] = row
    return table
