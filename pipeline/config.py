"""Typed schemas for every config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` hold the values and document each knob; these
dataclasses hold the *types*, so that Hydra rejects an unknown key or a wrongly
typed value at composition time with a message naming the key.  Defaults here
mirror the YAML files only so that the library can be used without Hydra (tests,
notebooks); the YAML files are the documented source of truth.  The model's own
schema is :mod:`pipeline.model.config` (plain dataclasses: the model knows no Hydra).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from pipeline.fields import at_least, check_ranges, fraction, in_half_open_unit, positive
from pipeline.model.config import (
    AttentionConfig,
    AttentionPlacement,
    AttentionScore,
    ContextType,
    DecoderConfig,
    EncoderConfig,
    Impl,
    InitState,
    ModelConfig,
    Readout,
    ReadoutState,
    RnnType,
)


class Source(str, Enum):
    multi30k = "multi30k"
    files = "files"
    hub = "hub"


class SpmType(str, Enum):
    unigram = "unigram"
    bpe = "bpe"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    auto = "auto"  # bf16 where the device multiplies bf16 natively, else fp32 (pipeline/precision.py)


class Strategy(str, Enum):
    greedy = "greedy"
    beam = "beam"


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"  # dynamic int8 quantisation of the Linear layers and RNN cells, CPU (pipeline/fast/quantize.py)


@dataclass
class DataConfig:
    name: str = "multi30k"
    source: Source = Source.multi30k
    src_lang: str = "de"
    tgt_lang: str = "en"
    local_dir: Optional[str] = None
    files: dict[str, Optional[str]] = field(default_factory=lambda: {"train": None, "val": None, "test": None})
    hub_id: Optional[str] = None
    hub_config: Optional[str] = None
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "val": "validation", "test": "test"})
    hub_src_column: Optional[str] = None
    hub_tgt_column: Optional[str] = None
    max_len: int = at_least(100, 1)
    max_ratio: float = positive(3.0)
    max_line_bytes: int = at_least(100_000, 1)
    cache_dir: str = "data/cache"
    num_proc: int = at_least(1, 1)


@dataclass
class TokenizerConfig:
    type: SpmType = SpmType.unigram
    vocab_size: int = at_least(8000, 8)
    joint: bool = True
    character_coverage: float = fraction(1.0, closed_high=True)
    num_threads: int = at_least(2, 1)
    train_sentences: int = at_least(1_000_000, 0)


@dataclass
class BatchConfig:
    max_tokens: int = at_least(4096, 1)
    max_sentences: int = at_least(512, 1)


@dataclass
class DecodeConfig:
    strategy: Strategy = Strategy.greedy
    beam_size: int = at_least(1, 1)
    length_penalty: float = at_least(0.0, 0)
    max_len_ratio: float = positive(2.0)
    max_len: int = at_least(200, 1)
    nbest: int = at_least(1, 1)
    batch_size: int = at_least(128, 1)
    quantize: Quantize = Quantize.none


@dataclass
class EflomalConfig:
    train_pairs: int = at_least(0, 0)
    max_words: int = at_least(100, 1)
    model: int = at_least(3, 1)
    n_samplers: int = at_least(3, 1)
    rel_iterations: float = positive(1.0)
    null_prior: float = fraction(0.2)


@dataclass
class GuidedAlignmentConfig:
    weight: float = at_least(0.0, 0)
    model: int = at_least(3, 1)
    n_samplers: int = at_least(3, 1)
    rel_iterations: float = positive(1.0)
    null_prior: float = fraction(0.2)

    def links_settings(self) -> EflomalConfig | None:
        """eflomal's settings for the training links when guided alignment is on (weight > 0), else None.

        Every training pair is aligned, so no corpus limit of :class:`EflomalConfig` applies."""
        if self.weight <= 0:
            return None
        return EflomalConfig(
            model=self.model, n_samplers=self.n_samplers, rel_iterations=self.rel_iterations, null_prior=self.null_prior
        )


@dataclass
class EmaConfig:
    decay: float = fraction(0.0)
    validate: bool = True


@dataclass
class TrainConfig:
    seed: int = 1234
    device: str = "auto"
    threads: Optional[int] = at_least(None, 1)
    precision: Precision = Precision.auto
    lr: float = positive(1e-3)
    warmup_steps: int = at_least(0, 0)
    plateau_factor: float = in_half_open_unit(0.5)
    plateau_patience: int = at_least(2, 0)
    min_lr: float = at_least(1e-5, 0)
    label_smoothing: float = fraction(0.1)
    clip_norm: float = positive(1.0)
    max_steps: Optional[int] = at_least(None, 1)
    max_epochs: Optional[int] = at_least(None, 1)
    max_minutes: Optional[float] = positive(None)
    eval_every: int = at_least(500, 1)
    eval_max_sentences: Optional[int] = at_least(None, 1)
    log_every: int = at_least(50, 1)
    checkpoint_every: int = at_least(0, 0)
    early_stop_patience: int = at_least(5, 0)
    keep_checkpoints: int = at_least(3, 1)
    max_bad_steps: int = at_least(20, 1)
    accum_steps: int = at_least(1, 1)
    dist_timeout_minutes: float = positive(30.0)
    examples_logged: int = at_least(3, 0)
    progress: bool = True
    keep_freed_memory: bool = True
    onednn_cache: int = at_least(16384, 1)
    guided_alignment: GuidedAlignmentConfig = field(default_factory=GuidedAlignmentConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)


@dataclass
class TrainAppConfig:
    data: DataConfig = MISSING
    tokenizer: TokenizerConfig = MISSING
    batch: BatchConfig = field(default_factory=BatchConfig)
    model: ModelConfig = MISSING
    train: TrainConfig = MISSING
    decode: DecodeConfig = MISSING
    run_dir: str = MISSING
    experiment: Optional[str] = None


class Weights(str, Enum):
    auto = "auto"  # the ones the checkpoint's validation used (its EMA weights with train.ema.validate)
    model = "model"  # the trained weights
    ema = "ema"  # their exponential moving average (train.ema.decay)


@dataclass
class RunCheckpointConfig:
    """Where and how evaluate, translate and align run a checkpoint (conf/runtime/default.yaml)."""

    device: str = "auto"
    threads: Optional[int] = at_least(None, 1)
    precision: Precision = Precision.fp32
    impl: Impl = Impl.auto
    weights: Weights = Weights.auto


class Split(str, Enum):
    val = "val"
    test = "test"  # the corpus's test split (Multi30k: test_2016_flickr)
    # Multi30k's later test sets, read from the same raw folder when their files are there (other
    # corpora: data.files.<name> or data.hub_splits.<name>); no run is tuned on them
    test_2017_flickr = "test_2017_flickr"
    test_2017_mscoco = "test_2017_mscoco"
    test_2018_flickr = "test_2018_flickr"


@dataclass
class EvaluateAppConfig(RunCheckpointConfig):
    checkpoint: Any = MISSING  # a path, or a list of paths: an ensemble
    split: Split = Split.test
    src_file: Optional[str] = None
    ref_file: Optional[str] = None
    check_language: bool = True
    decode: DecodeConfig = MISSING
    out: Optional[str] = None
    length_edges: list[int] = field(default_factory=lambda: [8, 10, 12, 14, 17])
    min_bucket: int = at_least(50, 1)
    n_bootstrap: int = at_least(1000, 1)


class AttentionOutput(str, Enum):
    none = "none"
    jsonl = "jsonl"  # per input line: pieces, attention weights and score as one JSON object


@dataclass
class TranslateAppConfig(RunCheckpointConfig):
    checkpoint: Any = MISSING  # a path, or a list of paths: an ensemble
    input: Optional[str] = None
    decode: DecodeConfig = MISSING
    stream_max_lines: int = at_least(1024, 1)
    attention: AttentionOutput = AttentionOutput.none
    attention_file: str = "attention.jsonl"


class Level(str, Enum):
    word = "word"
    subword = "subword"


class ImageFormat(str, Enum):
    png = "png"
    svg = "svg"
    pdf = "pdf"


class AlignTarget(str, Enum):
    auto = "auto"  # ref when gold is given, else hyp
    hyp = "hyp"  # the model's own translation (decoded with `decode`)
    ref = "ref"  # forced decoding of the reference (ref_file or the split's targets)


class AlignMethod(str, Enum):
    attention = "attention"  # the model's attention (needs an attention checkpoint)
    eflomal = "eflomal"  # the statistical aligner alone (pipeline/alignment/statistical.py)
    both = "both"  # attention, and eflomal beside it; a failing eflomal only warns


class SourceMerge(str, Enum):
    sum = "sum"
    mean = "mean"


class LinkRule(str, Enum):
    argmax = "argmax"
    column = "column"
    intersection = "intersection"
    grow_diag_final_and = "grow_diag_final_and"
    threshold = "threshold"


class Combine(str, Enum):
    intersection = "intersection"
    grow_diag_final_and = "grow_diag_final_and"
    union = "union"


@dataclass
class ExtractionConfig:
    """How forced attention becomes word links (pipeline/alignment/extraction.py explains each)."""

    shift: bool = False
    source_merge: SourceMerge = SourceMerge.sum
    rule: LinkRule = LinkRule.grow_diag_final_and
    threshold: float = in_half_open_unit(0.3)
    combine: Combine = Combine.grow_diag_final_and


@dataclass
class AlignAppConfig(RunCheckpointConfig):
    method: AlignMethod = AlignMethod.attention
    eflomal: EflomalConfig = field(default_factory=EflomalConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: Optional[Any] = None  # a path, or a list of paths: an ensemble (its mean attention)
    reverse_checkpoint: Optional[str] = None
    split: Split = Split.test
    src_file: Optional[str] = None
    ref_file: Optional[str] = None
    check_language: bool = True
    num: int = 20
    ids: Optional[list[int]] = None
    decode: DecodeConfig = MISSING
    target: AlignTarget = AlignTarget.auto
    level: Level = Level.word
    formats: list[ImageFormat] = field(default_factory=lambda: [ImageFormat.png])
    out: Optional[str] = None
    gold: Optional[str] = None
    gold_source_first: bool = True


@dataclass
class ServeLimits:
    max_body_bytes: int = at_least(65536, 1)
    max_sentences: int = at_least(32, 1)
    max_input_tokens: int = at_least(200, 1)
    max_beam_size: int = at_least(10, 1)
    timeout_s: float = positive(30.0)


@dataclass
class ServeAppConfig(RunCheckpointConfig):
    checkpoint: Any = MISSING  # a path, or a list of paths: an ensemble
    host: str = "127.0.0.1"
    port: int = at_least(8080, 0)
    decode: DecodeConfig = MISSING
    batch_window_ms: float = at_least(0.0, 0)
    batch_sentences: int = at_least(64, 1)
    limits: ServeLimits = field(default_factory=ServeLimits)


@dataclass
class AverageAppConfig:
    run_dir: str = MISSING
    last: Optional[int] = None
    best: Optional[int] = None
    out: Optional[str] = None


@dataclass
class ReportAppConfig:
    runs: list[str] = MISSING
    out: Optional[str] = None
    split: Split = Split.test
    test_sets: Optional[list[Split]] = None
    decode: DecodeConfig = MISSING
    n_bootstrap: int = at_least(1000, 1)
    examples: int = at_least(5, 0)


def register_configs() -> None:
    """Register the primary schemas; conf/*.yaml list them first in `defaults`."""
    from hydra.core.config_store import ConfigStore  # only the CLI registers: the library needs no Hydra

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainAppConfig)
    cs.store(name="evaluate_schema", node=EvaluateAppConfig)
    cs.store(name="translate_schema", node=TranslateAppConfig)
    cs.store(name="align_schema", node=AlignAppConfig)
    cs.store(name="report_schema", node=ReportAppConfig)
    cs.store(name="average_schema", node=AverageAppConfig)
    cs.store(name="serve_schema", node=ServeAppConfig)
    for group, node in [
        ("data", DataConfig),
        ("tokenizer", TokenizerConfig),
        ("model", ModelConfig),
        ("train", TrainConfig),
        ("decode", DecodeConfig),
    ]:
        cs.store(group=group, name="schema", node=node)


def to_object(cfg: DictConfig | Any, schema: type, key: str = "") -> Any:
    """Turn a composed DictConfig node into its dataclass (enums resolved, ranges checked).

    ``key`` is the node's place in the app config (e.g. ``"data"``), for error messages.
    """
    if isinstance(cfg, schema):
        check_ranges(cfg, key)
        return cfg
    merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    obj = OmegaConf.to_object(merged)
    check_ranges(obj, key)
    return obj


def as_plain_dict(obj: Any) -> dict[str, Any]:
    """A JSON/YAML-safe dict of a dataclass config (enums as their values)."""
    node = OmegaConf.structured(obj) if not isinstance(obj, DictConfig) else obj
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


__all__: list[str] = [
    "AlignAppConfig",
    "AverageAppConfig",
    "ServeAppConfig",
    "AlignTarget",
    "ImageFormat",
    "Level",
    "ReportAppConfig",
    "EvaluateAppConfig",
    "Split",
    "TranslateAppConfig",
    "AttentionConfig",
    "AttentionPlacement",
    "AttentionScore",
    "BatchConfig",
    "ContextType",
    "DataConfig",
    "DecodeConfig",
    "DecoderConfig",
    "EncoderConfig",
    "InitState",
    "ModelConfig",
    "Precision",
    "Readout",
    "ReadoutState",
    "RnnType",
    "Source",
    "SpmType",
    "Strategy",
    "TokenizerConfig",
    "TrainAppConfig",
    "TrainConfig",
    "as_plain_dict",
    "check_ranges",
    "register_configs",
    "to_object",
]
