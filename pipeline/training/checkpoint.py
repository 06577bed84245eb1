"""Checkpoints: atomic save, safe load, and rebuilding a model and tokenizer from one file.

A checkpoint is a plain dict of tensors, numbers, strings and bytes, loaded with
``torch.load(weights_only=True)`` so that a shared checkpoint can never run code.
It carries everything needed to resume exactly (see :mod:`pipeline.training.trainer`) and
everything needed to translate with it alone: the model config, the weights and
the sentencepiece model bytes.

Files in ``run_dir/checkpoints/``: ``step-00000500.pt`` (the last ``train.keep_checkpoints``
are kept), ``last.pt`` and ``best.pt``, and the averages ``pipeline.average`` writes
(``average-last5.pt``...).  Weights: ``model`` holds the trained parameters (what a resumed run
continues from); with ``train.ema.decay`` also ``ema``, their moving average, and
``decode_weights`` names the ones validation used, which every decoding command loads by
default.  ``last.pt``/``best.pt`` are hard links to a
step file where the filesystem allows it (no second copy on disk), else copies, and
every name is switched with ``os.replace``, so a crash at any point leaves either the
old or the new complete file, never a torn one.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.config import ModelConfig, to_object
from pipeline.data.tokenizer import PAD_ID, Tokenizer
from pipeline.errors import UserError
from pipeline.fast import Implementations, accelerate
from pipeline.model import Seq2Seq, build_model
from pipeline.model.config import ContextType, Impl

log = logging.getLogger(__name__)

# 2: the redesigned model (nn.GRUCell decoders, attention inside its context module); 1 loads, upgraded
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
STEP_GLOB = "step-*.pt"


def step_path(ckpt_dir: Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step-{step:08d}.pt"


def save_atomic(payload: dict, path: Path) -> None:
    """Write ``payload`` to ``path`` via a temp file in the same folder, fsync, then ``os.replace``.

    The checkpoint is serialised in memory first and then written with plain file writes, so
    that a full disk raises ``OSError`` with its errno (``torch.save`` into a file turns a failed
    write into an opaque RuntimeError); the temp file is removed and ``path`` left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({**payload, "format_version": FORMAT_VERSION}, buffer)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def point_to(target: Path, alias: Path) -> None:
    """Make ``alias`` (last.pt, best.pt) the same file as ``target``, atomically."""
    tmp = alias.with_name(f".{alias.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:  # no hard links here (some network filesystems): copy instead
        shutil.copyfile(target, tmp)
    os.replace(tmp, alias)


def prune_steps(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step files (best.pt/last.pt links keep their data)."""
    steps = sorted(Path(ckpt_dir).glob(STEP_GLOB))
    for old in steps[: max(len(steps) - max(keep, 1), 0)]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load a checkpoint safely; every failure is a one-line :class:`UserError`.

    ``mmap``: map the tensors instead of reading them, for a caller that reads only the
    checkpoint's small entries (progress, config) of many files."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory; give a .pt file in it, e.g. {path / 'last.pt'}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; give the path of a .pt file under <run_dir>/checkpoints/")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise UserError(
                f"checkpoint {path} needs pickled code to load ({first[:160]}); refused for safety: "
                "only load checkpoints written by this pipeline"
            ) from None
        raise UserError(f"checkpoint {path} is corrupt ({first[:160]}); use another checkpoint") from None
    # A file that is not a torch zip archive goes through torch's legacy unpickler, which fails
    # with whatever the bytes happen to trigger (KeyError on a text file, IndexError, ...).
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError, TypeError) as err:
        raise UserError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}); use another checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(
            f"{path} is not a checkpoint of this pipeline (no model weights); use <run_dir>/checkpoints/*.pt"
        )
    version = ckpt.get("format_version")
    if version not in READABLE_VERSIONS:
        raise UserError(
            f"checkpoint {path} has format version {version}, this pipeline reads versions {READABLE_VERSIONS}; "
            "use the pipeline version that wrote it"
        )
    return ckpt


_V1_GRU = {"weight_hh": "weight_hh", "bias_ih": "bias_ih", "bias_hh": "bias_hh"}


def upgrade_v1_weights(weights: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Weights of a format-1 checkpoint (before the redesign) under today's names.

    The Bahdanau decoder's GRU input weight was split into its E y and c columns
    (``weight_ie``, ``weight_ic``); it is one ``nn.GRUCell`` now.  Luong's decoder had an
    ``nn.GRU`` (``rnn.*_l0``).  An attention's parameters sit one level deeper, in
    ``decoder.context.attention``.  The values are unchanged.
    """
    attention = ContextType(cfg.context) == ContextType.attention
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        if key in ("decoder.weight_ie", "decoder.weight_ic"):
            continue
        name = key.removeprefix("decoder.")
        if name in _V1_GRU:
            key = f"decoder.cell.{_V1_GRU[name]}"
        elif name.startswith("rnn.") and name.endswith("_l0"):
            key = f"decoder.cell.{name[len('rnn.') : -len('_l0')]}"
        elif attention and name.startswith("context."):
            key = f"decoder.context.attention.{name[len('context.') :]}"
        out[key] = value
    if "decoder.weight_ie" in weights:
        out["decoder.cell.weight_ih"] = torch.cat([weights["decoder.weight_ie"], weights["decoder.weight_ic"]], 1)
    return out


@dataclass
class Restored:
    """A model and tokenizer rebuilt from a checkpoint alone, with its metadata."""

    model: Seq2Seq
    tokenizer: Tokenizer
    config: dict  # the full resolved config of the run that wrote it
    step: int
    path: Path
    implementations: Implementations  # which implementation each module runs (model.impl)
    weights: str = "model"  # which weights it holds: model (as trained) or ema (their moving average)
    averaged: dict | None = None  # an averaged checkpoint's selection and steps (pipeline.average)
    members: list[Restored] = field(default_factory=list)  # an ensemble's members (model is their Ensemble)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.model.parameters()).device

    @property
    def top_log_probs(self):
        """The searches' top-k function for this model (None: the reference's)."""
        return self.implementations.top_log_probs


def chosen_weights(ckpt: dict, weights: str = "auto") -> str:
    """The name of the weights ``weights`` (auto | model | ema, or its enum) picks in ``ckpt``."""
    weights = getattr(weights, "value", weights)
    return ckpt.get("decode_weights", "model") if weights == "auto" else weights


def decode_weights(ckpt: dict, path: str | Path, weights: str = "auto") -> dict[str, torch.Tensor]:
    """The weights to translate with: ``model`` (the trained ones), ``ema`` (their exponential moving
    average, :mod:`pipeline.training.ema`), or ``auto``: the ones the checkpoint says its
    validation used (``decode_weights``; ``model`` in a checkpoint without EMA)."""
    which = chosen_weights(ckpt, weights)
    if which == "ema" and "ema" not in ckpt:
        raise UserError(
            f"checkpoint {path} holds no EMA weights (trained without train.ema.decay); use weights=auto or model"
        )
    if which not in ("model", "ema"):
        raise UserError(f"weights={weights}: choose auto, model or ema")
    return ckpt[which]


def model_weights(
    ckpt: dict, cfg: ModelConfig, path: str | Path = "", weights: str = "auto"
) -> dict[str, torch.Tensor]:
    """The checkpoint's decoding weights (:func:`decode_weights`) under today's names (format 1 upgraded)."""
    chosen = decode_weights(ckpt, path, weights)
    return upgrade_v1_weights(chosen, cfg) if ckpt.get("format_version") == 1 else chosen


def restore(
    path: str | Path, device: torch.device | str = "cpu", impl: Impl | str = Impl.auto, weights: str = "auto"
) -> Restored:
    """Rebuild the model (in eval mode, implementations chosen by ``impl``, with the ``weights`` of
    :func:`decode_weights`) and the tokenizer from one file."""
    ckpt = load_checkpoint(path)
    model_cfg = to_object(ckpt["config"]["model"], ModelConfig)
    tokenizer = Tokenizer.from_state(ckpt["tokenizer"])
    model = build_model(model_cfg, len(tokenizer.src), len(tokenizer.tgt), PAD_ID)
    try:
        model.load_state_dict(model_weights(ckpt, model_cfg, path, weights))
    except RuntimeError as err:
        raise UserError(f"checkpoint {path} does not match its own model config ({str(err).splitlines()[0]})") from None
    device = torch.device(device)
    model = model.to(device).eval()
    implementations = accelerate(model, Impl(impl), device, model_cfg.fast_exclude)
    log.info(implementations.summary())
    return Restored(
        model,
        tokenizer,
        ckpt["config"],
        int(ckpt.get("step", 0)),
        Path(path),
        implementations,
        chosen_weights(ckpt, weights),
        ckpt.get("averaged"),
    )


def newest_intact(ckpt_dir: Path) -> tuple[Path, dict] | None:
    """The newest loadable checkpoint for resuming: last.pt, else the newest intact step file.

    A torn or corrupt file is skipped with a warning, so a damaged ``last.pt`` costs at
    most the steps since the previous checkpoint.
    """
    ckpt_dir = Path(ckpt_dir)
    candidates = [ckpt_dir / "last.pt"] + sorted(ckpt_dir.glob(STEP_GLOB), reverse=True)
    for cand in candidates:
        if not cand.is_file():
            continue
        try:
            return cand, load_checkpoint(cand)
        except UserError as err:
            print(f"warning: skipping {err}", flush=True)
    return None


def state_dict_of(model: torch.nn.Module) -> dict[str, Any]:
    """Weights without a DDP/compile wrapper's prefix."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    return inner.state_dict()
