"""The run manifest (``run_dir/manifest.json``): what a reader needs to reproduce or trust a run."""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path

import torch

from pipeline.fast import Implementations
from pipeline.runtime.hardware import cpu_description
from pipeline.runtime.precision import precision_name


def git_commit() -> str:
    """The commit of the pipeline's checkout (with ``+dirty`` for local changes), or ``unknown``."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_manifest(
    device: torch.device, dataset_fingerprint: str, seed: int, bf16: bool, implementations: Implementations
) -> dict:
    """What a reader needs to reproduce or trust a run: code, data, seed, software, hardware, arithmetic,
    and which implementation each module ran (``model.impl``)."""
    return {
        "git_commit": git_commit(),
        "dataset_fingerprint": dataset_fingerprint,
        "seed": seed,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({cpu_description(torch.get_num_threads())})",
        "precision": precision_name(bf16),  # train.precision=auto resolved on this device
        "implementations": {
            s.component: s.chosen.name if s.chosen else "reference" for s in implementations.selections
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
