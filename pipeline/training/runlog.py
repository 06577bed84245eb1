"""Where a training run reports: ``metrics.jsonl`` and TensorBoard.

``metrics.jsonl`` holds one JSON object per logged step (``"kind": "train"``) and per
validation (``"kind": "val"``).  On resume, lines newer than the checkpoint are
dropped first, so a run killed between a log line and its next checkpoint never
reports the same step twice; TensorBoard does the same through ``purge_step``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter


def truncate_metrics(path: Path, max_step: int) -> None:
    """Keep only the records of ``metrics.jsonl`` with ``step <= max_step`` (atomic rewrite)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill: drop it
            continue
        if int(record.get("step", 0)) <= max_step:
            kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict]:
    """All intact records of a ``metrics.jsonl``."""
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


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
