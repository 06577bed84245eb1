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


def override_errors(config_name: str, command: str) -> Callable[[Callable[[], object]], Callable[[], object]]:
    """Compose ``config_name`` with the command line's overrides before Hydra runs.

    Hydra reports a bad override (an unknown key, a wrongly typed value, a missing
    group option) in several lines and exits 1; composing once here first turns it into
    the project's one-line ``error:`` and exit 2.  Sweeps (``a,b``) and ``hydra.*``
    overrides are left to Hydra, and so is any command line with flags other than
    ``-m`` (``--help``, ``--cfg job``...).
    """

    def decorate(hydra_main: Callable[[], object]) -> Callable[[], object]:
        @functools.wraps(hydra_main)
        def wrapper() -> object:
            try:
                check_overrides(config_name, sys.argv[1:], command)
            except UserError as err:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(UserError.exit_code)
            return hydra_main()

        return wrapper

    return decorate


def check_overrides(config_name: str, argv: list[str], command: str) -> None:
    """Raise a one-line :class:`UserError` if ``argv``'s overrides do not compose with ``config_name``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return
    args = [a for a in argv if not a.startswith("-")]
    hint = f"python -m pipeline.{command} --cfg job lists every key and its value"
    try:
        parsed = OverridesParser.create().parse_overrides(args)
        plain = [a for a, o in zip(args, parsed) if not (o.is_sweep_override() or o.key_or_group.startswith("hydra"))]
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name=command):
            compose(config_name, overrides=plain)
    except (HydraException, OmegaConfBaseException) as err:
        raise UserError(f"{_first_lines(err)} ({hint})") from None


def _first_lines(err: BaseException | None, keep: int = 2) -> str:
    """The first lines of the first ``keep`` messages along an exception's cause chain, as one line.

    OmegaConf chains a templated copy of its message ('Value '$VALUE' ...'); it is skipped.
    A missing config group option lists the options that exist.
    """
    lines: list[str] = []
    options = getattr(err, "options", None)
    while err is not None and len(lines) < keep:
        text = str(err).strip()
        first = text.splitlines()[0] if text else ""
        first = first.rstrip(".")
        if first and first != "None" and "$VALUE" not in first and first not in lines:
            lines.append(first)
        err = err.__cause__ or err.__context__
    options = [o for o in options or [] if o != "schema"]  # the typed schema is not a user's choice
    if options:
        lines.append(f"available: {', '.join(options)}")
    return "; ".join(lines)


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


@override_errors("prepare", "prepare")
@hydra.main(config_path=CONF_DIR, config_name="prepare", version_base="1.3")
@user_errors
def prepare_main(cfg: DictConfig) -> None:
    from pipeline.config import BatchConfig, DataConfig, TokenizerConfig, to_object
    from pipeline.prepare import prepare

    data = prepare(
        to_object(cfg.data, DataConfig, "data"),
        to_object(cfg.tokenizer, TokenizerConfig, "tokenizer"),
        to_object(cfg.batch, BatchConfig, "batch"),
    )
    print(data.stats.table())


@override_errors("train", "train")
@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
@user_errors
def train_main(cfg: DictConfig) -> None:
    from pipeline.config import TrainAppConfig, to_object
    from pipeline.train import train

    summary = train(to_object(cfg, TrainAppConfig))
    print(json.dumps(summary))


@override_errors("evaluate", "evaluate")
@hydra.main(config_path=CONF_DIR, config_name="evaluate", version_base="1.3")
@user_errors
def evaluate_main(cfg: DictConfig) -> None:
    from pipeline.config import EvaluateAppConfig, to_object
    from pipeline.evaluate import evaluate, summary_table

    report = evaluate(to_object(cfg, EvaluateAppConfig))
    print(summary_table(report))
    print("wrote " + " and ".join(report["files"]))


@override_errors("translate", "translate")
@hydra.main(config_path=CONF_DIR, config_name="translate", version_base="1.3")
@user_errors
def translate_main(cfg: DictConfig) -> None:
    from pipeline.config import TranslateAppConfig, to_object
    from pipeline.translate import translate

    translate(to_object(cfg, TranslateAppConfig))


@override_errors("align", "align")
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


@override_errors("report", "report")
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
