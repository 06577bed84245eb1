"""Compare runs side by side: ``python -m pipeline.report runs=[DIR_A,DIR_B] [out=DIR]``.

Reads what ``train``, ``evaluate`` and ``align`` left in each run directory and
writes ``comparison.json``, ``report.md``, ``report.html`` (self-contained: figures
inline) and the figures as PNG files.  Scores come from the evaluation JSON of
``split`` decoded with ``decode`` (default: test, beam-5); significance is
sacrebleu's paired bootstrap resampling of each system against the baseline (the
run whose model has no attention, else the first run) and, with three systems or
more, of the others against additive attention unless additive is that baseline.

Runs of the same model with different seeds form one system: its scores are the
mean over seeds with the standard deviation beside them, and the paired test and
the examples use its first run.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from pipeline.config import DataConfig, ReportAppConfig, to_object
from pipeline.data.textfile import read_lines
from pipeline.errors import UserError
from pipeline.evaluation.evaluate import decode_tag, read_inputs
from pipeline.files import read_json_object, write_atomic
from pipeline.reporting.plots import bleu_by_length_figure, save_figure, training_curves_figure
from pipeline.reporting.render import render_html, render_markdown
from pipeline.reporting.variants import test_set_scores, variant_scores
from pipeline.training.checkpoint import load_checkpoint
from pipeline.training.runlog import read_metrics

SCORES = ("bleu", "chrf", "ter")
RESULT_KEYS = (*SCORES, "signatures", "by_length")  # what the report reads of an evaluation's JSON
AER_KEYS = ("model", "sentences")  # and of an alignment score's


@dataclass
class Run:
    """One training run and its evaluation, as read back from its directory."""

    dir: Path
    name: str
    has_attention: bool
    config: dict
    manifest: dict
    params: int
    train_minutes: float
    best_step: int
    curve: list[dict]  # validation records: step, bleu, elapsed_min
    eval: dict
    hyps: list[str]


def load_run(run_dir: Path, split: str, tag: str) -> Run:
    """Everything the report needs from one run directory."""
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if not ckpt_path.exists():
        raise UserError(f"{run_dir} has no checkpoints/last.pt; train it first (python -m pipeline.train run_dir=...)")
    ckpt = load_checkpoint(ckpt_path)
    stem = f"{split}.{tag}"
    how = f"python -m pipeline.evaluate checkpoint={run_dir}/checkpoints/best.pt split={split} (decode {tag})"
    remedy = f"re-create it: {how}"
    evaluation = read_json_object(run_dir / "eval" / f"{stem}.json", remedy, RESULT_KEYS)
    if evaluation.get("model") not in (None, ckpt["config"]["model"]["name"]):
        raise UserError(
            f"{run_dir}/eval/{stem}.json scores model {evaluation['model']!r} but the run's checkpoints/last.pt is "
            f"{ckpt['config']['model']['name']!r}: a checkpoint of another run was copied in; restore the run's own "
            f"checkpoints, or re-create the result: {how}"
        )
    hyps = read_lines(run_dir / "eval" / f"{stem}.hyp.txt")
    manifest_path = run_dir / "manifest.json"
    manifest = {}
    if manifest_path.exists():
        manifest = read_json_object(manifest_path, "train writes it again when it resumes the run")
    curve = [
        {"step": r["step"], "bleu": r["bleu"], "elapsed_min": r.get("elapsed_min", 0.0)}
        for r in read_metrics(run_dir / "metrics.jsonl")
        if r.get("kind") == "val"
    ]
    progress = ckpt["progress"]
    return Run(
        dir=run_dir,
        name=ckpt["config"]["model"]["name"],
        has_attention=ckpt["config"]["model"]["context"] == "attention",
        config=ckpt["config"],
        manifest=manifest,
        params=int(ckpt.get("params", 0)),
        train_minutes=float(progress["elapsed_s"]) / 60.0,
        best_step=int(progress["best_step"]),
        curve=curve,
        eval=evaluation,
        hyps=hyps,
    )


def _check_comparable(runs: list[Run]) -> None:
    """Side by side only makes sense on the same data and the same test sentences."""
    first = runs[0]
    for r in runs[1:]:
        for key in ("src_lang", "tgt_lang", "source", "name", "local_dir", "files"):
            if r.config["data"].get(key) != first.config["data"].get(key):
                raise UserError(
                    f"{r.dir} was trained on other data than {first.dir} (data.{key}: "
                    f"{r.config['data'].get(key)} vs {first.config['data'].get(key)}); compare runs on the same corpus"
                )
        if len(r.hyps) != len(first.hyps):
            raise UserError(f"{r.dir} has {len(r.hyps)} hypotheses but {first.dir} has {len(first.hyps)}")


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def system_entry(runs: list[Run]) -> dict:
    """Scores (mean over seeds, with sd when several), CIs of the first run, size, time."""
    first = runs[0]
    entry: dict = {}
    for key in SCORES:
        mean, sd = _mean_sd([r.eval[key] for r in runs])
        entry[key] = mean
        entry[f"{key}_ci95"] = first.eval.get(f"{key}_ci95")
        if sd is not None:
            entry[f"{key}_sd"] = sd
    entry.update(
        params=first.params,
        train_minutes=statistics.fmean(r.train_minutes for r in runs),
        best_step=first.best_step,
        seeds=[r.manifest.get("seed", r.config["train"]["seed"]) for r in runs],
        runs=[str(r.dir) for r in runs],
        has_attention=first.has_attention,
        sentences_per_second=first.eval.get("sentences_per_second"),
    )
    return entry


def paired_significance(systems: dict[str, list[Run]], baseline: str, refs: list[str], n: int) -> dict:
    """sacrebleu's paired bootstrap resampling of each system against ``baseline`` (BLEU and chrF)."""
    named = [(baseline, systems[baseline][0].hyps)] + [(k, v[0].hyps) for k, v in systems.items() if k != baseline]
    metrics = {"bleu": BLEU(), "chrf": CHRF()}
    _, results = PairedTest(named, metrics, [refs], test_type="bs", n_samples=n)()
    # sacrebleu keys its results by score name ("BLEU", "chrF2"), after "System", in the metrics' order
    columns = dict(zip(metrics, [k for k in results if k != "System"]))
    comparisons = {
        name: {f"{m}_p_value": float(results[col][i].p_value) for m, col in columns.items()}
        for i, (name, _) in enumerate(named)
        if i > 0
    }
    first_other = next(iter(comparisons.values()), {})
    return {
        "method": f"paired bootstrap resampling (sacrebleu PairedTest, {n} samples), each system vs {baseline}",
        "baseline": baseline,
        "p_value": first_other.get("bleu_p_value"),
        "comparisons": comparisons,
    }


def pick_examples(srcs: list[str], k: int) -> list[int]:
    """``k`` test sentences spread over the length distribution, long ones included (not cherry-picked)."""
    order = sorted(range(len(srcs)), key=lambda i: (len(srcs[i].split()), i))
    quantiles = [0.3, 0.6, 0.85, 0.95, 1.0] if k == 5 else [(j + 1) / k for j in range(k)]
    picked: list[int] = []
    for q in sorted(quantiles, reverse=True):  # on small sets neighbours collide: step down to a free one
        pos = round(q * (len(order) - 1))
        while pos >= 0 and order[pos] in picked:
            pos -= 1
        if pos >= 0:
            picked.append(order[pos])
    return sorted(picked)


def _gallery(runs: list[Run]) -> dict | None:
    """The newest alignment export of an attention run: its index.html and first heatmap."""
    for r in runs:
        pages = sorted((r.dir / "align").glob("*/index.html"), key=lambda p: p.stat().st_mtime, reverse=True)
        if pages:
            images = sorted(pages[0].parent.glob("sent*.png"))
            return {"index": pages[0], "image": images[0] if images else None, "system": r.name}
    return None


def alignment_scores(systems: dict[str, list[Run]]) -> dict:
    """AER of each attention system on each gold set (``<run>/aer/<set>/aer.json``, written by compare.sh).

    Only a score of the checkpoint the report evaluates counts (its step is the run's best
    step); an older one is left out and named in ``stale``.
    """
    scores: dict = {"systems": {}, "diagonal": {}, "eflomal": {}, "stale": []}
    for name, runs in systems.items():
        for path in sorted((runs[0].dir / "aer").glob("*/eflomal/aer.json")):  # compare.sh: align method=both
            aer = read_json_object(path, "re-create it: pipeline.align method=both gold=FILE (compare.sh)", AER_KEYS)
            scores["eflomal"].setdefault(path.parent.parent.name, _link_scores(aer))
        for path in sorted((runs[0].dir / "aer").glob("*/aer.json")):
            aer = read_json_object(
                path, "re-create it: pipeline.align gold=FILE (compare.sh step 4)", (*AER_KEYS, "diagonal_baseline")
            )
            if aer.get("step") != runs[0].best_step:
                scores["stale"].append(str(path))
                continue
            gold = path.parent.name
            scores["systems"].setdefault(name, {})[gold] = _link_scores(aer)
            scores["diagonal"][gold] = aer["diagonal_baseline"]["aer"]
    return scores


def _link_scores(aer: dict) -> dict:
    """AER, precision and recall of an aer.json's links (the extraction's, or eflomal's symmetrised)."""
    model = aer["model"]
    return {k: model[k] for k in ("aer", "precision", "recall")} | {"sentences": aer["sentences"]}


def _is_additive(run: Run) -> bool:
    """Bahdanau's model: the built-in additive score (no ``model.attention_class``), Bahdanau placement
    (older checkpoints lack the keys: their defaults)."""
    model = run.config.get("model", {})
    attention = model.get("attention", {})
    bahdanau = attention.get("placement", "bahdanau") == "bahdanau"
    built_in = not model.get("attention_class")
    return run.has_attention and bahdanau and built_in and attention.get("score", "additive") == "additive"


def build_comparison(cfg: ReportAppConfig, runs: list[Run]) -> tuple[dict, dict[str, list[Run]], list[str], list[str]]:
    systems: dict[str, list[Run]] = {}
    for r in runs:
        systems.setdefault(r.name, []).append(r)
    no_attention = next((k for k, v in systems.items() if not v[0].has_attention), None)
    baseline = no_attention or next(iter(systems))  # the reference of the significance test
    _, srcs, refs = read_inputs(cfg.split, None, None, runs[0].config)
    assert refs is not None
    if len(refs) != len(runs[0].hyps):
        raise UserError(
            f"{runs[0].dir}/eval: {len(runs[0].hyps)} hypotheses for {len(refs)} {cfg.split.value} sentences (a "
            f"truncated or replaced .hyp.txt?); re-run: python -m pipeline.evaluate "
            f"checkpoint={runs[0].dir}/checkpoints/best.pt split={cfg.split.value}"
        )
    significance = paired_significance(systems, baseline, refs, cfg.n_bootstrap) if len(systems) > 1 else None
    if significance and no_attention is None:
        significance["method"] += " (no system without attention: the first one is the reference)"
    # with attention variants beside additive attention: each of them against additive too, unless
    # additive is the reference already (that would repeat the test above)
    additive = next((k for k, v in systems.items() if _is_additive(v[0])), None)
    variants = {k: v for k, v in systems.items() if k != baseline}
    vs_additive = None
    if additive is not None and additive != baseline and len(variants) > 1:
        vs_additive = paired_significance(variants, additive, refs, cfg.n_bootstrap)
    tag = decode_tag(cfg.decode)
    variants = {
        k: found
        for k, v in systems.items()
        if (found := variant_scores(v[0].dir, cfg.split.value, tag, v[0].eval, v[0].hyps, refs, cfg.n_bootstrap))
    }
    comparison = {
        "split": cfg.split.value,
        "decode": tag,
        "systems": {k: system_entry(v) for k, v in systems.items()},
        "variants": variants,
        "test_sets": test_set_scores(systems, _test_set_names(cfg, runs[0]), tag, explicit=bool(cfg.test_sets)),
        "significance": significance,
        "significance_vs_additive": vs_additive,
        "by_length": {k: v[0].eval["by_length"] for k, v in systems.items()},
        "alignment": alignment_scores(systems),
        "signatures": runs[0].eval["signatures"],
        "manifest": {str(r.dir): {**r.manifest, "config": r.config} for r in runs},
    }
    return comparison, systems, srcs, refs


def _test_set_names(cfg: ReportAppConfig, run: Run) -> list[str]:
    """``report.test_sets``, or every test set whose files are there for the runs' corpus."""
    if cfg.test_sets:
        return [getattr(s, "value", s) for s in cfg.test_sets]
    from pipeline.data.corpus import available_test_sets  # imports datasets

    return available_test_sets(to_object(run.config["data"], DataConfig, "data"))


def report(cfg: ReportAppConfig) -> dict:
    """Write comparison.json, report.md, report.html and the figures; returns the comparison."""
    if not cfg.runs:
        raise UserError("runs is empty; give runs=[DIR_A,DIR_B]")
    tag = decode_tag(cfg.decode)
    runs = [load_run(Path(d), cfg.split.value, tag) for d in cfg.runs]
    _check_comparable(runs)
    comparison, systems, srcs, refs = build_comparison(cfg, runs)
    out = Path(cfg.out) if cfg.out else Path(cfg.runs[0]).resolve().parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "bleu_by_length.png": save_figure(bleu_by_length_figure(comparison["by_length"]), out / "bleu_by_length.png"),
        "training_curves.png": save_figure(
            training_curves_figure({k: v[0].curve for k, v in systems.items()}), out / "training_curves.png"
        ),
    }
    examples = [
        {"id": i, "src": srcs[i], "ref": refs[i], "hyps": {k: v[0].hyps[i] for k, v in systems.items()}}
        for i in pick_examples(srcs, cfg.examples)
    ]
    for path in comparison["alignment"]["stale"]:
        print(f"warning: {path} scores an older checkpoint than best.pt; left out (re-run scripts/compare.sh)")
    gallery = _gallery([r for r in runs if r.has_attention])
    write_atomic(out / "comparison.json", json.dumps(comparison, indent=2, ensure_ascii=False) + "\n")
    write_atomic(out / "report.md", render_markdown(comparison, examples, gallery, out))
    write_atomic(out / "report.html", render_html(comparison, examples, gallery, out, figures))
    return {**comparison, "out": str(out)}
