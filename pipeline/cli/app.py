"""What every Hydra command shares: the config folder, one-line errors, and the decorator.

Each command module of this package (``prepare``, ``train``, ``evaluate``, ``translate``,
``align``, ``report``) defines ``main`` with :func:`hydra_command`: it composes
``conf/<command>.yaml``, turns the config into typed dataclasses and calls one library
function.  A :class:`UserError` is printed as one line on stderr with exit status 2; any
other exception keeps its traceback.  This package is the only one that imports Hydra's app
machinery, and no library module imports it.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.config import register_configs
from pipeline.errors import UserError

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")

register_configs()


def datasets_progress_off() -> None:
    """datasets' per-split progress bars would bury the pipeline's own output and errors.

    Through the environment variable that datasets reads when it is imported (a user's own
    setting wins), so that a command that never loads a corpus (translate, evaluate of files)
    does not import datasets, ~0.6-0.9 s, only to silence it."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "datasets" in sys.modules and os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1":
        sys.modules["datasets"].disable_progress_bars()


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


def hydra_command(name: str) -> Callable[[Callable[[DictConfig], object]], Callable[[], object]]:
    """``main`` of ``python -m pipeline.<name>``: compose ``conf/<name>.yaml`` with the command line,
    with bad overrides and :class:`UserError` reported as one line and exit status 2."""

    def decorate(fn: Callable[[DictConfig], object]) -> Callable[[], object]:
        app = hydra.main(config_path=CONF_DIR, config_name=name, version_base="1.3")(user_errors(fn))
        return override_errors(name, name)(app)

    return decorate
