#!/usr/bin/env python3
"""Performance figures of this machine and this checkout, as a table and JSON.

    python scripts/bench.py [--out bench.json] [--threads 2] [--checkpoint CKPT] [--steps 8] [--repeats 3]
                            [--device auto|cpu|cuda] [--bf16 auto|on|off]

bf16 is timed where the device multiplies it in hardware (``--bf16 auto``): a CPU with AVX512-BF16
or AMX, or a GPU.  An AVX2-only CPU emulates bf16 (torch's reference GEMM; a training step 19x
slower than fp32), so there the bf16 figures are null unless ``--bf16 on`` asks for them.
The JSON's settings name the CPU (model, vector instructions, bf16 support): figures from this
project's CPUs differ 2-3x in fp32.

* matmul peak (fp32, bf16): a 2048^3 matrix product (8192^3 on CUDA, where 2048^3 is too small
  to fill the GPU), median of repeats, read before and after
  every model's training runs; the peak is the highest reading (a shared machine reads low while
  another process runs, and one low reading once put the MFU above 100%), all readings in the JSON;
* training throughput in target tokens/s (forward, backward, Adam step) of both models at
  the default sizes on real Multi30k train batches (the first batches of epoch 0), fp32 and
  bf16: the median over ``--repeats`` runs of ``--steps`` steps, after one warm-up run (the
  steady state of later epochs); and, for RNNsearch in each precision, one run over the next
  ``--steps`` batches, never seen before in the process (the first epoch, "as training runs":
  in bf16 oneDNN compiles a kernel for every new GEMM shape, see pipeline/runtime/onednn.py);
* the matmul peak at the model's GEMM shapes: every product of those training steps
  (pipeline/runtime/gemm_shapes.py lists them) timed alone by ``torch.mm`` at its own shape,
  Σ FLOPs / Σ time, per model and precision;
* MFU: analytical FLOPs per target token (pipeline/runtime/flops.py states the formula) times
  tokens/s, over the 2048^3 peak of the same precision (the highest reading of the run), and
  over the peak at the model's shapes;
* RNNsearch's training with ``model.impl=reference`` (the readable modules alone) against the
  default ``auto``, same batches; and the bf16/fp32 ratio of each model where bf16 is timed, or
  a line saying that the CPU has no bf16 instructions;
* decoding throughput (greedy and beam-5, sentences/s, fp32, under bf16 autocast and with
  ``decode.quantize=int8``), the sacreBLEU of each run's output, and fp32 decoding's MFU (its
  analytical FLOPs, every beam row the search ran counted, over the fp32 2048^3 peak), on test_2016_flickr with
  a trained checkpoint (``--checkpoint``; default
  runs/full/bahdanau/checkpoints/best.pt, written by ``scripts/compare.sh full``, when present);
* padding fraction of the training batches, peak RSS (the whole run's, and each phase's where
  Linux lets the peak be reset: setup, training, decoding, and the RSS that decoding starts
  from once the free memory training kept is handed back) and the git commit.

The machine is shared and noisy: compare variants by ratios from one run, not across runs.
``--device auto`` (the default) benchmarks CUDA where it is present, as the trainer's
``train.device=auto`` would train there; on CUDA every timing synchronizes the device, the fp32
figures are true fp32 (TF32 off, torch's default for matrix products) and the JSON also holds the
GPU's peak allocated memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import (  # noqa: E402
    AttentionPlacement,
    AttentionScore,
    BatchConfig,
    ContextType,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    Strategy,
    TokenizerConfig,
    TrainConfig,
    to_object,
)
from pipeline.data.batching import BucketBatchSampler, collate  # noqa: E402
from pipeline.data.corpus import column_array  # noqa: E402
from pipeline.data.prepare import prepare, train_padding  # noqa: E402
from pipeline.data.tokenizer import PAD_ID  # noqa: E402
from pipeline.fast import accelerate  # noqa: E402
from pipeline.model import build_model  # noqa: E402
from pipeline.runtime.allocator import keep_freed_memory, release_free_memory  # noqa: E402
from pipeline.runtime.flops import decoding_flops, training_flops  # noqa: E402
from pipeline.runtime.gemm_shapes import training_gemms  # noqa: E402
from pipeline.runtime.hardware import cpu_description, resolve_device  # noqa: E402
from pipeline.runtime.onednn import set_primitive_cache_capacity  # noqa: E402
from pipeline.runtime.precision import bf16_in_hardware  # noqa: E402
from pipeline.training.manifest import git_commit  # noqa: E402

CPU = torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host clock times it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, repeats: int, device: torch.device = CPU) -> float:
    fn()  # warm-up
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _vm_mb(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status (Linux), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def phase_peak_rss_mb() -> float | None:
    """The peak RSS since the last call (Linux: VmHWM, then reset through /proc/self/clear_refs,
    so the next phase starts a new window from the RSS it inherits); None where unsupported."""
    peak = _vm_mb("VmHWM")
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return peak


def gpu_peak_mb(device: torch.device) -> float | None:
    """CUDA memory allocated at its peak since the last call, in MB (the peak is then reset); None off CUDA."""
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return peak


def matmul_gflops(dtype: torch.dtype, device: torch.device = CPU, repeats: int = 5) -> float:
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    return 2 * n**3 / median_time(lambda: torch.mm(a, b), repeats, device) / 1e9


def shape_peak_gflops(shapes: Counter, dtype: torch.dtype, device: torch.device = CPU, repeats: int = 5) -> float:
    """The matmul peak at the model's GEMM shapes: Σ FLOPs / Σ time of the products ``shapes``
    (pipeline/runtime/gemm_shapes.py), each shape timed alone by ``torch.mm`` (median of
    ``repeats``; a product under a millisecond is repeated within one timing, so the clock's
    resolution does not count), weighted by how often a step runs it."""
    flops = seconds = 0.0
    for (m, k, n), count in shapes.items():
        a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
        out = torch.empty(m, n, dtype=dtype, device=device)
        once = median_time(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), 1, device)
        calls = max(1, min(1000, int(1e-3 / max(once, 1e-7))))

        def run(a=a, b=b, out=out, calls=calls) -> None:
            for _ in range(calls):
                torch.mm(a, b, out=out)

        seconds += count * median_time(run, repeats, device) / calls
        flops += count * 2.0 * m * k * n
    return flops / seconds / 1e9


def apply_training_settings() -> None:
    """The process settings pipeline/training/trainer.py applies by default: ``train.keep_freed_memory``
    and ``train.onednn_cache``."""
    if TrainConfig().keep_freed_memory:
        keep_freed_memory()
    set_primitive_cache_capacity(TrainConfig().onednn_cache)


def first_batches(
    data, count: int, skip: int = 0, device: torch.device = CPU, batch: BatchConfig | None = None
) -> list:
    """Batches ``skip`` .. ``skip + count`` of epoch 0 of Multi30k train (seed 1), on ``device``; by default
    with the training default's budget (``BatchConfig``: 4096 tokens, 512 sentences)."""
    batch = batch or BatchConfig()
    train = data.splits["train"]
    lengths = column_array(train, "src_len"), column_array(train, "tgt_len")
    sampler = BucketBatchSampler(*lengths, batch.max_tokens, batch.max_sentences, seed=1)
    batches = []
    for idx in sampler.batches(0)[skip : skip + count]:
        ex = train[idx.tolist()]
        batches.append(collate(ex["src_ids"], ex["tgt_ids"], idx.tolist()).to(device))
    return batches


def train_throughput(
    data,
    context: ContextType,
    bf16: bool,
    steps: int,
    repeats: int,
    score: str = "additive",
    luong: bool = False,
    unseen_from: int | None = None,
    device: torch.device = CPU,
    impl: str = "auto",
) -> tuple[float, float]:
    """(median target tokens/s, FLOPs per target token) of full training steps, set up as
    pipeline/training/trainer.py does by default (fused Adam, ``train.keep_freed_memory``, ``train.onednn_cache``).

    By default the same ``steps`` batches run ``repeats`` times after a warm-up run: the steady
    state of epochs after the first, with every GEMM kernel compiled.  ``unseen_from=i`` instead
    times, once and without warm-up, batches i .. i + steps of epoch 0, which no earlier run of
    this process may have seen (the first epoch's cost, oneDNN's kernel compilation for new
    shapes included)."""
    apply_training_settings()
    torch.manual_seed(0)
    cfg = ModelConfig(name=context.value, context=context)
    cfg.attention.score = AttentionScore(score)
    if luong:  # conf/model/luong.yaml
        cfg.attention.placement = AttentionPlacement.luong
    model = build_model(cfg, len(data.tokenizer.src), len(data.tokenizer.tgt), PAD_ID).to(device)
    model = accelerate(model, impl, device).model  # model.impl, as pipeline/training/trainer.py does
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)  # as pipeline/training/trainer.py
    batches = first_batches(data, steps, skip=unseen_from or 0, device=device)
    n_tok = sum(int((b.tgt_out != PAD_ID).sum()) for b in batches)
    flops = sum(
        training_flops(cfg, len(data.tokenizer.tgt), b.src_lens.tolist(), (b.tgt_out != PAD_ID).sum(1).tolist())
        for b in batches
    )

    def run() -> None:
        model.train()
        for b in batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss_sum, _ = model(b.src, b.src_lens, b.tgt_in, b.tgt_out, label_smoothing=0.1)
            loss = loss_sum / int((b.tgt_out != PAD_ID).sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    if unseen_from is not None:
        synchronize(device)
        t0 = time.perf_counter()
        run()
        synchronize(device)
        return n_tok / (time.perf_counter() - t0), flops / n_tok
    return n_tok / median_time(run, repeats, device), flops / n_tok


def decode_throughput(checkpoint: Path, repeats: int, device: torch.device = CPU, bf16: bool = True) -> dict:
    """Sentences/s and test BLEU of greedy and beam-5 search on test_2016_flickr: fp32, under bf16
    autocast (where ``bf16``) and, on the CPU, with ``decode.quantize=int8`` (keys ``..._int8``)."""
    import sacrebleu

    from pipeline.data.corpus import load_corpus
    from pipeline.decoding.search import decode_sequences
    from pipeline.fast.quantize import int8_engine, quantize_int8
    from pipeline.training.checkpoint import restore

    restored = restore(checkpoint, device)
    corpus = load_corpus(to_object(restored.config["data"], DataConfig))
    refs = list(corpus["test"]["tgt"])
    src_ids = restored.tokenizer.src.encode(list(corpus["test"]["src"]))
    models = {"": (restored.model, False)}
    if bf16:
        models["_bf16"] = (restored.model, True)
    if device.type == "cpu" and int8_engine():
        int8 = restore(checkpoint, device).model  # a second copy: the float one keeps its weights
        quantize_int8(int8, device)
        models["_int8"] = (int8, False)
    speed, bleu, flops = {}, {}, {}
    for name, cfg in {
        "greedy": DecodeConfig(strategy=Strategy.greedy, batch_size=128),
        "beam5": DecodeConfig(strategy=Strategy.beam, beam_size=5, length_penalty=0.6, batch_size=64),
    }.items():
        for suffix, (model, low) in models.items():
            hyps = []

            def run(c=cfg, model=model, low=low, hyps=hyps) -> None:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=low):
                    hyps[:] = decode_sequences(model, src_ids, c, top_k=restored.top_log_probs)

            speed[name + suffix] = len(src_ids) / median_time(run, repeats, device)
            texts = restored.tokenizer.tgt.decode([h.tokens for h in hyps])
            bleu[name + suffix] = sacrebleu.corpus_bleu(texts, [refs]).score
        counter = RowCounter(restored.model)  # one more fp32 run, untimed: the rows each search step ran
        decode_sequences(counter, src_ids, cfg, top_k=restored.top_log_probs)
        src_lens = [len(ids) + 1 for ids in src_ids]  # + EOS, as the batches count it
        base = restored.model
        flops[name] = decoding_flops(base.cfg, base.tgt_vocab, src_lens, counter.rows) / len(src_ids)
    return {"sentences_per_s": speed, "bleu": bleu, "flops_per_sentence": flops}


class RowCounter:
    """A model whose ``step`` counts the decoder rows it runs (Σ over steps of the batch rows);
    everything else is the wrapped model's."""

    def __init__(self, model) -> None:
        self.model, self.rows = model, 0

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def step(self, prev_tokens: torch.Tensor, state):
        self.rows += prev_tokens.numel()
        return self.model.step(prev_tokens, state)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def step_gemms(data, context: ContextType, steps: int, device: torch.device = CPU) -> Counter:
    """The matrix products (pipeline/runtime/gemm_shapes.py) of the ``steps`` batches train_throughput times."""
    cfg = ModelConfig(name=context.value, context=context)
    shapes: Counter = Counter()
    for b in first_batches(data, steps, device=device):
        tgt_lens = (b.tgt_out != PAD_ID).sum(1).tolist()
        shapes += training_gemms(cfg, len(data.tokenizer.tgt), b.src_lens.tolist(), tgt_lens)
    return shapes


def utilisation(tokens_per_s: float, flops_per_token: float, gflops: float | None) -> float | None:
    """MFU: the model's analytical FLOP rate over a measured peak (None where no peak was read)."""
    return tokens_per_s * flops_per_token / (gflops * 1e9) if gflops else None


def mfu_text(mfu: dict, precision: str) -> str:
    """ "55.0% of the 2048^3 peak, 70.1% at its shapes" (the second where it was measured)."""
    text = f"{mfu[precision]:.1%}"
    at_shapes = mfu.get(f"{precision}_at_shapes")
    return text if at_shapes is None else f"{text}; {at_shapes:.1%} at its shapes"


def decode_line(speed: dict, bleu: dict, suffix: str, label: str) -> str:
    """One printed row of decode figures; a variant's row also gives its ratio and BLEU change against fp32."""
    cols = [f"{s} {speed[s + suffix]:6.1f} sent/s (BLEU {bleu[s + suffix]:.2f})" for s in ("greedy", "beam5")]
    row = f"decode test_2016_flickr {label:<22} " + "   ".join(cols)
    if suffix:
        ratios = " / ".join(f"x{speed[s + suffix] / speed[s]:.2f}" for s in ("greedy", "beam5"))
        changes = " / ".join(f"{bleu[s + suffix] - bleu[s]:+.2f}" for s in ("greedy", "beam5"))
        row += f"   against fp32: {ratios}, BLEU {changes}"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs/full/bahdanau/checkpoints/best.pt")
    parser.add_argument(
        "--variants", action="store_true", help="also the dot, general and scaled_dot scores and Luong's placement"
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when present (as train.device)"
    )
    parser.add_argument(
        "--bf16",
        choices=["auto", "on", "off"],
        default="auto",
        help="time bf16 too; auto: where the device multiplies bf16 in hardware (an AVX2-only CPU emulates it, "
        "19x slower than fp32, which would stretch this bench past an hour)",
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available here; use --device auto or cpu")
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    set_primitive_cache_capacity(TrainConfig().onednn_cache)  # before this process's first GEMM, as in training

    time_bf16 = args.bf16 == "on" or (args.bf16 == "auto" and bf16_in_hardware(device))
    precisions = ("fp32", "bf16") if time_bf16 else ("fp32",)
    readings: dict[str, list[float]] = {"fp32": [], "bf16": []}

    def read_peak() -> None:
        for precision in precisions:
            readings[precision].append(matmul_gflops(torch.bfloat16 if precision == "bf16" else torch.float32, device))

    read_peak()
    data = prepare(DataConfig(), TokenizerConfig(), BatchConfig())
    rss = {"setup": phase_peak_rss_mb()}
    tokens, mfu, flops_per_token = {}, {}, {}
    attention = ContextType.attention
    systems = [("bahdanau", attention, "additive", False), ("baseline", ContextType.fixed, "additive", False)]
    if args.variants:
        systems += [(score, attention, score, False) for score in ("dot", "general", "scaled_dot")]
        systems.append(("luong", attention, "general", True))
    gpu_peaks = {"train": 0.0}
    for name, context, score, luong in systems:
        tokens[name] = {"bf16": None}
        for precision in precisions:
            bf16 = precision == "bf16"
            gpu_peak_mb(device)  # the peak readings' 8192^3 operands are not training's
            tok_s, fpt = train_throughput(data, context, bf16, args.steps, args.repeats, score, luong, device=device)
            tokens[name][precision] = tok_s
            flops_per_token[name] = fpt
            gpu_peaks["train"] = max(gpu_peaks["train"], gpu_peak_mb(device) or 0.0)
        read_peak()
    peak = {precision: max(values, default=None) for precision, values in readings.items()}
    shape_peak = {}  # per model and precision: the matmul peak at that model's GEMM shapes
    for name, context, _score, _luong in systems[:2]:
        shapes = step_gemms(data, context, args.steps, device)
        shape_peak[name] = {p: shape_peak_gflops(shapes, DTYPES[p], device) for p in precisions}
    for name in tokens:
        mfu[name] = {p: utilisation(tokens[name].get(p, 0.0), flops_per_token[name], peak[p]) for p in peak}
        if name in shape_peak:
            mfu[name].update(
                {
                    f"{p}_at_shapes": utilisation(tokens[name][p], flops_per_token[name], shape_peak[name][p])
                    for p in precisions
                }
            )
    # RNNsearch on batches never seen before, as training's first epoch meets them: fp32, and bf16
    # where it is timed, each on batches of its own
    first_sight = {}
    for i, precision in enumerate(precisions):
        first_sight[precision], _ = train_throughput(
            data, attention, precision == "bf16", args.steps, 1, unseen_from=(i + 1) * args.steps, device=device
        )
    # the readable reference path (model.impl=reference, #11) against the fast one, same batches and settings
    reference = {}
    for precision in precisions:
        reference[precision], _ = train_throughput(
            data, attention, precision == "bf16", args.steps, args.repeats, device=device, impl="reference"
        )
    rss["train"] = phase_peak_rss_mb()
    release_free_memory()  # as the trainer does before validation
    rss["before_decode"] = _vm_mb("VmRSS")
    gpu_peaks["train"] = max(gpu_peaks["train"], gpu_peak_mb(device) or 0.0)  # the first-sight run
    decode = decode_throughput(args.checkpoint, 1, device, time_bf16) if args.checkpoint.exists() else None
    gpu_peaks["decode"] = gpu_peak_mb(device) if decode else None
    decode_mfu = None
    if decode:
        decode_mfu = {
            name: utilisation(decode["sentences_per_s"][name], fps, peak["fp32"])
            for name, fps in decode["flops_per_sentence"].items()
        }
    rss["decode"] = phase_peak_rss_mb() if decode else None
    whole_run = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # reset with VmHWM, where it was
    result = {
        "matmul_gflops": peak,
        "matmul_gflops_readings": readings,
        "train_tokens_per_s": tokens,
        # on batches never seen before, in each timed precision (bf16 only where it is in hardware)
        "train_tokens_per_s_first_sight": {"bahdanau": first_sight},
        "train_tokens_per_s_reference": {"bahdanau": reference},  # model.impl=reference
        # MFU against the 2048^3 peak ("fp32", "bf16") and against the peak at the model's shapes
        "mfu": mfu,
        "matmul_gflops_at_model_shapes": shape_peak,
        "flops_per_target_token": flops_per_token,
        "decode_sentences_per_s": decode["sentences_per_s"] if decode else None,
        # sacreBLEU of the same decoding runs' output on test_2016_flickr (int8 against fp32: its cost)
        "decode_bleu": decode["bleu"] if decode else None,
        # fp32 decoding's analytical FLOPs (pipeline/runtime/flops.py, every beam row counted) per
        # sentence, and x sentences/s over the fp32 2048^3 peak
        "decode_flops_per_sentence": decode["flops_per_sentence"] if decode else None,
        "decode_mfu": decode_mfu,
        "padding_fraction": train_padding(data.splits["train"], BatchConfig()),
        "peak_rss_mb": max([whole_run] + [v for k, v in rss.items() if v and k != "before_decode"]),
        # per phase: training keeps its freed memory for reuse (train.keep_freed_memory) and hands
        # it back before decoding, as the trainer does before validation; "before_decode" is the
        # RSS decoding starts from
        "peak_rss_mb_by_phase": rss,
        # CUDA: the peak memory allocated by the training runs (the largest) and by decoding
        "gpu_peak_allocated_mb": gpu_peaks if device.type == "cuda" else None,
        "commit": git_commit(),
        "settings": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "cpu": cpu_description(args.threads),  # the figures differ 2-3x between this project's CPUs
            "bf16_timed": time_bf16,  # false: the bf16 figures are null (--bf16)
            "threads": args.threads,
            "steps": args.steps,
            "repeats": args.repeats,
            "max_tokens": BatchConfig().max_tokens,
            "checkpoint": str(args.checkpoint) if decode else None,
            "torch": torch.__version__,
        },
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"cpu {result['settings']['cpu']}")
    if not time_bf16:
        print(
            "bf16: not timed, no bf16/fp32 ratio: this device has no bf16 instructions (neither AVX512-BF16 "
            "nor AMX; --bf16 on times torch's emulation)"
        )
    print(
        "matmul peak          "
        + "   ".join(f"{p} {peak[p]:8.1f} GFLOP/s" for p in precisions)
        + f"   (highest of {len(readings['fp32'])} readings; lowest "
        + " / ".join(f"{min(readings[p]):.0f}" for p in precisions)
        + ")"
    )
    for name in shape_peak:
        print(
            f"matmul peak at {name}'s GEMM shapes "
            + "   ".join(
                f"{p} {shape_peak[name][p]:8.1f} GFLOP/s ({shape_peak[name][p] / peak[p]:.0%})" for p in precisions
            )
        )
    for name in tokens:
        print(
            f"train {name:<9} "
            + "   ".join(f"{p} {tokens[name][p]:8.0f} tok/s (MFU {mfu_text(mfu[name], p)})" for p in precisions)
            + f"   {flops_per_token[name] / 1e6:.1f} MFLOP/token"
        )
    for p in precisions:
        rate = first_sight[p]
        unseen_mfu = {
            p: utilisation(rate, flops_per_token["bahdanau"], peak[p]),
            f"{p}_at_shapes": utilisation(rate, flops_per_token["bahdanau"], shape_peak["bahdanau"][p]),
        }
        print(
            f"train bahdanau  {p} on batches never seen before (kernel compilation included): {rate:.0f} tok/s "
            f"(MFU {mfu_text(unseen_mfu, p)}), x{rate / tokens['bahdanau'][p]:.2f} the repeated batches"
        )
    for p in precisions:
        print(
            f"train bahdanau  {p} model.impl=reference {reference[p]:8.0f} tok/s; "
            f"model.impl=auto x{tokens['bahdanau'][p] / reference[p]:.2f}"
        )
    if time_bf16:
        ratios = "   ".join(f"{name} x{tokens[name]['bf16'] / tokens[name]['fp32']:.2f}" for name in tokens)
        print(f"bf16/fp32 training (repeated batches): {ratios}")
    if decode:
        speed, bleu = decode["sentences_per_s"], decode["bleu"]
        for suffix, label in (("", "fp32"), ("_bf16", "bf16 autocast"), ("_int8", "int8 (decode.quantize)")):
            if "greedy" + suffix in speed:
                print(decode_line(speed, bleu, suffix, label))
        fps = decode["flops_per_sentence"]
        print(
            f"decode fp32 MFU: greedy {decode_mfu['greedy']:.1%}, beam5 {decode_mfu['beam5']:.1%} "
            f"({fps['greedy'] / 1e6:.0f} and {fps['beam5'] / 1e6:.0f} MFLOP a sentence, every beam row counted)"
        )
    else:
        print(f"decode: skipped, no checkpoint at {args.checkpoint} (pass --checkpoint)")
    phases = "   ".join(f"{k} {v:.0f}" for k, v in rss.items() if v is not None)
    print(f"padding {result['padding_fraction']:.1%}   peak RSS {result['peak_rss_mb']:.0f} MB ({phases})")
    if device.type == "cuda":
        peaks = "   ".join(f"{k} {v:.0f}" for k, v in gpu_peaks.items() if v is not None)
        print(f"GPU {result['settings']['device']}: peak memory allocated, MB: {peaks}")
    print(f"commit {result['commit']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
