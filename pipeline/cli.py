"""Thin Hydra entry points; the only module that imports hydra's app machinery.

Each ``*_main`` composes ``conf/<command>.yaml``, turns the config into typed
dataclasses and calls a library function.  A :class:`UserError` is printed as one
line on stderr with exit status 2; any other exception keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.config import register_configs
from pipeline.errors import UserError

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

register_configs()


def datasets_progress_off() -> None:
    """datasets' per-split progress bars would bury the pipeline's own output and errors."""
    import datasets

    datasets.disable_progress_bars()


def user_errors(fn: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """Print a UserError as ``error: ...`` and exit 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> object:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
        datasets_progress_off()
        for noisy in ("datasets", "fsspec", "filelock", "urllib3", "matplotlib", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            return fn(cfg)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(UserError.exit_code)

    return wrapper


@hydra.main(config_path=CONF_DIR, config_name="prepare", version_base="1.3")
@user_errors
def prepare_main(cfg: DictConfig) -> None:
    from pipeline.config import BatchConfig, DataConfig, TokenizerConfig, to_object
    from pipeline.prepare import prepare

    data = prepare(
        to_object(cfg.data, DataConfig), to_object(cfg.tokenizer, TokenizerConfig), to_object(cfg.batch, BatchConfig)
    )
    print(data.stats.table())


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
@user_errors
def train_main(cfg: DictConfig) -> None:
    from pipeline.config import TrainAppConfig, to_object
    from pipeline.train import train

    summary = train(to_object(cfg, TrainAppConfig))
    print(json.dumps(summary))


@hydra.main(config_path=CONF_DIR, config_name="evaluate", version_base="1.3")
@user_errors
def evaluate_main(cfg: DictConfig) -> None:
    from pipeline.config import EvaluateAppConfig, to_object
    from pipeline.evaluate import evaluate, summary_table

    report = evaluate(to_object(cfg, EvaluateAppConfig))
    print(summary_table(report))
    print("wrote " + " and ".join(report["files"]))


@hydra.main(config_path=CONF_DIR, config_name="translate", version_base="1.3")
@user_errors
def translate_main(cfg: DictConfig) -> None:
    from pipeline.config import TranslateAppConfig, to_object
    from pipeline.translate import translate

    translate(to_object(cfg, TranslateAppConfig))


@hydra.main(config_path=CONF_DIR, config_name="align", version_base="1.3")
@user_errors
def align_main(cfg: DictConfig) -> None:
    from pipeline.align import align
    from pipeline.config import AlignAppConfig, to_object

    summary = align(to_object(cfg, AlignAppConfig))
    d = summary["diagnostics"]
    print(
        f"aligned {summary['aligned']} sentences, plotted {summary['plotted']}: mean entropy {d['mean_entropy']:.2f}, "
        f"EOS mass {d['eos_mass']:.2f}, monotonicity {d['monotonicity']:.2f}, coverage {d['coverage']:.2f}"
    )
    if summary["aer"]:
        m, diag = summary["aer"]["model"], summary["aer"]["diagonal_baseline"]
        print(
            f"AER {m['aer']:.3f} (precision {m['precision']:.3f}, recall {m['recall']:.3f}); "
            f"diagonal baseline AER {diag['aer']:.3f}"
        )
    print(f"wrote {summary['out']}/ (index.html, alignments.txt, diagnostics.json, heatmaps)")


@hydra.main(config_path=CONF_DIR, config_name="report", version_base="1.3")
@user_errors
def report_main(cfg: DictConfig) -> None:
    from pipeline.config import ReportAppConfig, to_object
    from pipeline.report import report
    from pipeline.report_render import result_rows

    comparison = report(to_object(cfg, ReportAppConfig))
    for row in result_rows(comparison):
        print("  ".join(f"{c:>18}" for c in row))
    print(f"wrote {comparison['out']}/ (comparison.json, report.md, report.html, figures)")
