"""Where a training run reports: ``metrics.jsonl`` and TensorBoard.

``metrics.jsonl`` holds one JSON object per logged step (``"kind": "train"``) and per
validation (``"kind": "val"``).  On resume, lines newer than the checkpoint are
dropped first, so a run killed between a log line and its next checkpoint never
reports the same step twice; TensorBoard does the same through ``purge_step``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)


def truncate_metrics(path: Path, max_step: int) -> None:
    """Keep only the records of ``metrics.jsonl`` with ``step <= max_step`` (atomic rewrite)."""
    if not path.exists():
        return
    kept = [json.dumps(r, ensure_ascii=False) for r in read_metrics(path) if r["step"] <= max_step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict]:
    """All intact records of a ``metrics.jsonl``; what is not a record is skipped.

    A last line torn by a kill is normal and skipped silently; anything else that is not a
    JSON object (a line in the middle, bytes that are not UTF-8: a file replaced or damaged)
    is skipped with one warning, so that a damaged log never stops a report or a resume.
    """
    if not path.exists():
        return []
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    out, bad = [], 0
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if _is_record(record):
            out.append(record)
        elif i < len(lines) - 1 or not line.startswith("{"):
            bad += 1
    if bad:
        log.warning("%s: %d of %d lines are not records of this pipeline; skipped them", path, bad, len(lines))
    return out


def _is_record(record: object) -> bool:
    """A dict with an integer step; a validation record also has a number as its BLEU."""
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        return False
    return record.get("kind") != "val" or isinstance(record.get("bleu"), (int, float))


class RunLog:
    """Appends to ``metrics.jsonl`` and writes TensorBoard scalars, images and text."""

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        self.metrics_path = Path(run_dir) / "metrics.jsonl"
        if resume_step is not None:
            truncate_metrics(self.metrics_path, resume_step)
        else:
            self.metrics_path.unlink(missing_ok=True)
        self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def record(self, kind: str, step: int, values: dict[str, Any], tb_prefix: str | None = None) -> None:
        """One JSON line; numeric values also as TensorBoard scalars under ``tb_prefix/``."""
        line = json.dumps({"kind": kind, "step": step, **values}, ensure_ascii=False)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        prefix = tb_prefix or kind
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        self.tb.flush()
        self.tb.close()
