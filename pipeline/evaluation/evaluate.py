"""Score a checkpoint: ``python -m pipeline.evaluate checkpoint=PATH [split=test] [decode=beam]``.

Needs only the checkpoint: the model, the tokenizer and the data config come from it.
Writes ``out/NAME.json`` and ``out/NAME.hyp.txt`` (``out`` defaults to
``<run_dir>/eval/``), both through a temp file and ``os.replace``, so an interrupted
or failed evaluation never leaves a partial result beside the good ones.

BLEU by source length (the analogue of Bahdanau et al. 2015, fig. 2) uses buckets of
source length in whitespace words, cut at ``length_edges``; a bucket holding fewer
than ``min_bucket`` sentences is merged into its neighbour, so every bucket's BLEU
rests on enough sentences to mean something.  Each bucket's 95% CI comes from
sacrebleu's bootstrap over that bucket's sentences.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import DataConfig, DecodeConfig, EvaluateAppConfig, Quantize, Split, Strategy, to_object
from pipeline.data.textfile import read_lines
from pipeline.decoding.stream import one_line
from pipeline.decoding.translate import checkpoint_names, checkpoint_tag, decode_in_bf16, load_model, translate_lines
from pipeline.errors import UserError
from pipeline.evaluation.metrics import score_corpus
from pipeline.files import writable_folder, write_atomic


def decode_tag(cfg: DecodeConfig) -> str:
    """``greedy`` or ``beam5`` (``beam5-lp0.6`` with a length penalty; ``-int8`` appended for int8
    decoding): part of output names, so that no setting overwrites another's results."""
    if Strategy(cfg.strategy) is Strategy.greedy:
        tag = "greedy"
    else:
        tag = f"beam{cfg.beam_size}"
        tag = f"{tag}-lp{cfg.length_penalty:g}" if cfg.length_penalty else tag
    return f"{tag}-int8" if Quantize(cfg.quantize) is Quantize.int8 else tag


def length_buckets(lengths: list[int], edges: list[int], min_size: int) -> list[tuple[int, int]]:
    """Inclusive (min_len, max_len) word-length ranges covering ``lengths``, each with >= ``min_size`` items.

    Start from the ranges cut at ``edges`` (upper bounds), then repeatedly merge the
    smallest under-filled bucket into its smaller neighbour.
    """
    if not lengths:
        return []
    top = max(lengths)
    bounds = sorted({e for e in edges if 0 < e < top}) + [top]
    ranges = [(lo, hi) for lo, hi in zip([1] + [b + 1 for b in bounds[:-1]], bounds)]
    ranges[0] = (min(min(lengths), ranges[0][0]), ranges[0][1])

    def count(r: tuple[int, int]) -> int:
        return sum(r[0] <= n <= r[1] for n in lengths)

    while len(ranges) > 1:
        sizes = [count(r) for r in ranges]
        small = [i for i, s in enumerate(sizes) if s < min_size]
        if not small:
            break
        i = min(small, key=lambda k: sizes[k])
        j = i - 1 if i == len(ranges) - 1 or (i > 0 and sizes[i - 1] <= sizes[i + 1]) else i + 1
        lo, hi = min(i, j), max(i, j)
        ranges[lo : hi + 1] = [(ranges[lo][0], ranges[hi][1])]
    return ranges


def bleu_by_length(
    srcs: list[str], hyps: list[str], refs: list[str], edges: list[int], min_size: int, n_bootstrap: int
) -> list[dict]:
    """``[{min_len, max_len, n, bleu, bleu_ci95}]`` over source-length buckets (whitespace words)."""
    lengths = [len(s.split()) for s in srcs]
    out = []
    for lo, hi in length_buckets(lengths, edges, min_size):
        idx = [i for i, n in enumerate(lengths) if lo <= n <= hi]
        scores = score_corpus([hyps[i] for i in idx], [refs[i] for i in idx], ("bleu",), n_bootstrap=n_bootstrap)
        out.append(
            {
                "min_len": lo,
                "max_len": hi,
                "n": len(idx),
                "bleu": scores["bleu"],
                "bleu_ci95": scores.get("bleu_ci95", 0.0),
            }
        )
    return out


def read_inputs(
    split: Split,
    src_file: str | None,
    ref_file: str | None,
    run_config: dict,
    require_ref: bool = True,
    check_language: bool = True,
) -> tuple[str, list[str], list[str] | None]:
    """(name stem, sources, references) from the files, or from the checkpoint's own corpus split.

    References are optional only where ``require_ref`` is false (alignment of a
    model's own translations); when given they must be line-aligned with the sources and,
    with ``check_language``, in the checkpoint's target language as the sources are in its source
    language (:mod:`pipeline.data.language`).
    """
    if src_file or ref_file:
        if not src_file or (require_ref and not ref_file):
            raise UserError("give both src_file and ref_file (or neither, to use split=val|test)")
        srcs = read_lines(src_file)
        refs = read_lines(ref_file) if ref_file else None
        if refs is not None and len(srcs) != len(refs):
            raise UserError(
                f"line counts differ: src_file {src_file} has {len(srcs)} lines, ref_file "
                f"{ref_file} has {len(refs)}; give line-aligned files"
            )
        if check_language:
            _check_languages(srcs, refs, src_file, ref_file, run_config["data"])
        stem = Path(src_file).name.removesuffix(".gz")
    else:
        from pipeline.data.corpus import load_split  # imports datasets (~0.6 s): only for a named split

        corpus = load_split(to_object(run_config["data"], DataConfig), Split(split).value)
        srcs, refs, stem = list(corpus["src"]), list(corpus["tgt"]), Split(split).value
    if not srcs:
        raise UserError(f"{src_file or split.value} is empty; nothing to do")
    return stem, srcs, refs


def _check_languages(srcs: list[str], refs: list[str] | None, src_file: str, ref_file: str | None, data) -> None:
    from pipeline.data.language import check_language  # loads py3langid: only for files given by path

    data = to_object(data, DataConfig)  # the checkpoint's plain dict, or align's own DataConfig
    src, tgt = data.src_lang, data.tgt_lang
    check_language(srcs, src, f"src_file={src_file}", f"{src}->{tgt}")
    if refs is not None:
        check_language(refs, tgt, f"ref_file={ref_file}", f"{src}->{tgt}")


def evaluate(cfg: EvaluateAppConfig) -> dict:
    """Decode and score; returns the JSON written to ``out/NAME.json``."""
    if cfg.out:
        writable_folder(Path(cfg.out))  # before the work, not after it
    restored = load_model(cfg.checkpoint, cfg.device, cfg.threads, cfg.impl, cfg.decode.quantize, cfg.weights)
    stem, srcs, refs = read_inputs(cfg.split, cfg.src_file, cfg.ref_file, restored.config, True, cfg.check_language)
    assert refs is not None
    bf16 = decode_in_bf16(cfg.precision, cfg.decode.quantize, restored.device)
    result = translate_lines(restored, srcs, cfg.decode, bf16)  # an empty source line gets an empty hypothesis
    hyps = [one_line(t) for t in result.texts]  # hyp.txt has exactly one line per source line
    scores = score_corpus(hyps, refs, n_bootstrap=cfg.n_bootstrap)
    report = {
        "bleu": scores["bleu"],
        "bleu_ci95": scores.get("bleu_ci95"),
        "chrf": scores["chrf"],
        "chrf_ci95": scores.get("chrf_ci95"),
        "ter": scores["ter"],
        "ter_ci95": scores.get("ter_ci95"),
        "signatures": scores["signatures"],
        "n_sentences": len(srcs),
        "decode": {k: v.value if hasattr(v, "value") else v for k, v in vars(cfg.decode).items()},
        "sentences_per_second": len(srcs) / max(result.seconds, 1e-9),
        "checkpoint": checkpoint_names(cfg.checkpoint),
        "weights": restored.weights,
        "averaged": restored.averaged,
        "step": restored.step,
        "model": restored.config["model"]["name"],
        "input": cfg.src_file or cfg.split.value,
        "by_length": bleu_by_length(srcs, hyps, refs, cfg.length_edges, cfg.min_bucket, cfg.n_bootstrap),
    }
    out = writable_folder(Path(cfg.out) if cfg.out else restored.path.resolve().parent.parent / "eval")
    name = f"{stem}.{decode_tag(cfg.decode)}{checkpoint_tag(restored, cfg.weights)}"
    write_atomic(out / f"{name}.hyp.txt", "".join(f"{t}\n" for t in hyps))
    write_atomic(out / f"{name}.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    report["files"] = [str(out / f"{name}.json"), str(out / f"{name}.hyp.txt")]
    return report


def summary_table(report: dict) -> str:
    """The short console table: scores, then BLEU per source-length bucket."""
    rows = [
        f"{report['model']} step {report['step']} on {report['input']} ({report['n_sentences']} sentences, "
        f"{decode_tag(to_object(report['decode'], DecodeConfig))}, {report['sentences_per_second']:.1f} sent/s)",
        f"BLEU {report['bleu']:.2f} ± {report['bleu_ci95'] or 0:.2f}   "
        f"chrF {report['chrf']:.2f}   TER {report['ter']:.2f}",
        "source words     n    BLEU (95% CI)",
    ]
    for b in report["by_length"]:
        rows.append(f"{b['min_len']:>5}-{b['max_len']:<5} {b['n']:>6}   {b['bleu']:6.2f} ± {b['bleu_ci95']:.2f}")
    rows.append(f"BLEU signature: {report['signatures']['bleu']}")
    return "\n".join(rows)
