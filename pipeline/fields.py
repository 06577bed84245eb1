"""Dataclass fields that carry their own value range, and the check that reads them.

Types are checked by Hydra at composition; ranges by :func:`check_ranges` when a config
becomes its dataclass.  Each ranged field carries its rule in its metadata, so the rule sits
next to the field it guards.  Plain Python (no Hydra), so that the model's config
(:mod:`pipeline.model.config`) can use it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field, fields, is_dataclass
from typing import Any

from pipeline.errors import UserError


def _ranged(default: Any, ok: Callable[[Any], bool], rule: str) -> Any:
    return field(default=default, metadata={"ok": ok, "rule": rule})


def at_least(default: Any, low: float) -> Any:
    """A field whose value (when not null) must be >= ``low``."""
    return _ranged(default, lambda v: v >= low, f">= {low}")


def positive(default: Any) -> Any:
    """A field whose value (when not null) must be > 0."""
    return _ranged(default, lambda v: v > 0, "> 0")


def fraction(default: Any, *, closed_high: bool = False) -> Any:
    """A field in [0, 1) (or [0, 1] with ``closed_high``)."""
    if closed_high:
        return _ranged(default, lambda v: 0 <= v <= 1, "in [0, 1]")
    return _ranged(default, lambda v: 0 <= v < 1, "in [0, 1)")


def in_half_open_unit(default: Any) -> Any:
    """A field in (0, 1]."""
    return _ranged(default, lambda v: 0 < v <= 1, "in (0, 1]")


def check_ranges(obj: Any, key: str = "") -> None:
    """Raise a one-line :class:`UserError` naming the first out-of-range key of dataclass ``obj``."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        name = f"{key}.{f.name}" if key else f.name
        if is_dataclass(value):
            check_ranges(value, name)
        elif "ok" in f.metadata and value is not None and not f.metadata["ok"](value):
            raise UserError(
                f"{name}={value} is out of range: it must be {f.metadata['rule']}; "
                f"fix it on the command line ({name}=...) or in conf/"
            )
