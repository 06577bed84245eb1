"""Which runs may resume from which checkpoints: same model, batch, data pair, seed and sentencepiece model."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import ModelConfig, as_plain_dict, to_object
from pipeline.errors import UserError

# Config sections that must match between a checkpoint and the command resuming it.
RESUME_MUST_MATCH = ("model", "batch", "data.source", "data.src_lang", "data.tgt_lang", "train.seed")
# Model keys that choose how the same model is computed, not what it is: a run may resume with others.
HOW_NOT_WHAT = ("impl", "fast_exclude")


def _model_identity(model: dict) -> dict:
    return {k: v for k, v in model.items() if k not in HOW_NOT_WHAT}


def _lookup(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg.get(part, {}) if isinstance(cfg, dict) else {}
    return cfg


def _differences(was, now, prefix: str) -> list[str]:
    """``key=old vs new now`` for each leaf that differs (the first four), so the error names what changed."""
    if not (isinstance(was, dict) and isinstance(now, dict)):
        return [f"{prefix}={was} vs {now} now"]
    found = []
    for key in dict.fromkeys([*was, *now]):
        if was.get(key) != now.get(key):
            found += _differences(was.get(key), now.get(key), f"{prefix}.{key}")
    return found[:4]


def check_resumable(saved: dict, current: dict, path: Path) -> None:
    """A run can only resume with the model, data and tokenizer it was started with.

    The tokenizer is compared by its model bytes (``saved["tokenizer"]``), not by its
    settings: a setting that does not change the model (e.g. a ``tokenizer.train_sentences``
    cap above the corpus size) must not block a resume, and anything that does change it
    (a setting, the part of the train text sentencepiece sees, its version) must.
    A model key newer than the checkpoint (e.g. ``model.attention.placement``) takes its
    schema default, which is what the checkpoint's model was.  ``model.impl`` and
    ``model.fast_exclude`` may differ: the implementations compute the same model from the same
    parameters.  A checkpoint of format 1 (before the redesign) cannot resume: its optimizer
    state belongs to other parameter shapes.
    """
    if saved.get("format_version") == 1:
        raise UserError(
            f"{path} was written before the model's redesign (checkpoint format 1): evaluate, translate "
            "and align still read it, but training cannot resume from it; choose a new run_dir"
        )
    saved_model = as_plain_dict(to_object(saved["config"]["model"], ModelConfig))
    saved = {**saved, "config": {**saved["config"], "model": _model_identity(saved_model)}}
    current = {**current, "config": {**current["config"], "model": _model_identity(current["config"]["model"])}}
    for key in RESUME_MUST_MATCH:
        if _lookup(saved["config"], key) != _lookup(current["config"], key):
            changed = ", ".join(_differences(_lookup(saved["config"], key), _lookup(current["config"], key), key))
            raise UserError(
                f"{path} was trained with a different {key} ({changed}): another model resumed, or a checkpoint of "
                "another run; resume with the original settings or choose a new run_dir"
            )
    if saved["tokenizer"] != current["tokenizer"]:
        was, now = saved["config"]["tokenizer"], current["config"]["tokenizer"]
        changed = ", ".join(f"tokenizer.{k}={was.get(k)} vs {now[k]} now" for k in now if was.get(k) != now[k])
        changed = changed or "same settings: the train text or the sentencepiece version differs"
        raise UserError(
            f"{path} was trained with a different sentencepiece model ({changed}); "
            "resume with the original tokenizer settings and data or choose a new run_dir"
        )
