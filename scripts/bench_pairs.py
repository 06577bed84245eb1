#!/usr/bin/env python3
"""One lever's speed ratio, measured by on/off pairs of training steps in one process.

    python scripts/bench_pairs.py --switch impl       # model.impl=auto (on) against model.impl=reference (off)
    python scripts/bench_pairs.py --switch fused_output_loss   # one registered fast implementation (on) against
                                   [--precision fp32|bf16]     # auto without it (off, model.fast_exclude)
                                   [--reps 6]
    python scripts/bench_pairs.py --switch bf16       # bf16 autocast (on) against fp32 (off): bf16's speed-up
                                   [--device cuda] [--max-tokens 16384]

This machine is shared and its speed drifts by 10-30% within minutes, which swamps a lever of a
few percent when the two variants run in separate processes (``bench_ab.py``) or even in
separate rounds of one process.  Here every batch is run twice in a row, once with the switch
on and once off (the order alternating), so both halves of a pair see the same machine state;
the figure is the median over pairs of t_off / t_on (> 1: the lever is faster), with quartiles.

Switches choose implementations through the model config, as a user would (never by patching):
``impl``, every registered fast implementation (``model.impl=auto``) against the plain modules
of pipeline/model/ (``model.impl=reference``); the name of one registered implementation
(pipeline/fast/: ``packed_gru_encoder``, ``recurrence_decoder``, ``fused_output_loss``...), ``auto``
against ``auto`` with ``model.fast_exclude=[name]``; ``bf16``, the precision itself (bf16 autocast
vs fp32, ``--precision`` ignored).  The two models start from the same parameters, each with its
own optimizer.  The default precision is what ``train.precision=auto`` picks on this device.
Default model and batches as ``bench.py`` (the first 6 batches of epoch 0, 4096 tokens; another
budget with ``--max-tokens``, at most ``max-tokens / 8`` sentences, and no fewer than 512).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import BatchConfig, DataConfig, ModelConfig, TokenizerConfig  # noqa: E402
from pipeline.data.prepare import prepare  # noqa: E402
from pipeline.data.tokenizer import PAD_ID  # noqa: E402
from pipeline.fast import REGISTRY, accelerate  # noqa: E402
from pipeline.model import build_model  # noqa: E402
from pipeline.runtime.hardware import cpu_description  # noqa: E402
from pipeline.runtime.precision import bf16_in_hardware, use_bf16  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from bench import apply_training_settings, first_batches, synchronize  # noqa: E402


def variant(reference: torch.nn.Module, device: torch.device, impl: str, exclude: list[str]):
    """A copy of ``reference`` (same parameters) with ``model.impl`` / ``model.fast_exclude``, and its optimizer."""
    implementations = accelerate(copy.deepcopy(reference), impl, device, exclude)
    model = implementations.model
    return model, torch.optim.Adam(model.parameters(), lr=1e-4, fused=True), implementations.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [impl.name for impl in REGISTRY]
    parser.add_argument("--switch", choices=["impl", "bf16", *names], required=True)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--reps", type=int, default=6, help="passes over the 6 batches (pairs = 6 x reps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--max-tokens", type=int, default=BatchConfig().max_tokens, help="padded positions per batch")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available here")
    torch.set_num_threads(args.threads)
    apply_training_settings()
    bf16 = use_bf16(args.precision, device)
    if (args.switch == "bf16" or bf16) and not bf16_in_hardware(device):
        print(
            f"note: this {device.type.upper()} has no bf16 instructions; its bf16 steps are emulated (19x an fp32 "
            "step on an AVX2-only CPU), so this run takes far longer than its usual ~2 minutes",
            file=sys.stderr,
        )

    data = prepare(DataConfig(), TokenizerConfig(), BatchConfig())
    torch.manual_seed(0)
    reference = build_model(ModelConfig(), len(data.tokenizer.src), len(data.tokenizer.tgt), PAD_ID).to(device)
    reference.train()
    if args.switch == "impl":
        on, off = variant(reference, device, "auto", []), variant(reference, device, "reference", [])
    elif args.switch == "bf16":
        on = off = variant(reference, device, "auto", [])
    else:
        on, off = variant(reference, device, "auto", []), variant(reference, device, "auto", [args.switch])
    variants = {True: on, False: off}
    autocast = {True: True, False: False} if args.switch == "bf16" else {True: bf16, False: bf16}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description(torch.get_num_threads())
    print(f"{where}\non:  {on[2]}\noff: {off[2]}", flush=True)
    default = BatchConfig()
    budget = BatchConfig(args.max_tokens, max(default.max_sentences, args.max_tokens // 8))
    batches = first_batches(data, 6, device=device, batch=budget)

    def step(b, on: bool) -> float:
        model, opt, _ = variants[on]
        synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast[on]):
            loss_sum, _ = model(b.src, b.src_lens, b.tgt_in, b.tgt_out, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        (loss_sum / int((b.tgt_out != PAD_ID).sum())).backward()
        opt.step()
        synchronize(device)
        return time.perf_counter() - t0

    for on in (True, False):  # warm-up: every GEMM shape compiled, every kernel built, both ways
        for b in batches:
            step(b, on)
    ratios, t_on, t_off = [], 0.0, 0.0
    for rep in range(args.reps):
        for i, b in enumerate(batches):
            times = {}
            for on in (True, False) if (rep + i) % 2 == 0 else (False, True):
                times[on] = step(b, on)
            ratios.append(times[False] / times[True])
            t_on, t_off = t_on + times[True], t_off + times[False]
    tokens = sum(int((b.tgt_out != PAD_ID).sum()) for b in batches) * args.reps
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    precision = "bf16" if bf16 else "fp32"
    label = "bf16 (on) vs fp32 (off)" if args.switch == "bf16" else f"{precision} {args.switch}"
    print(
        f"{label}: on {tokens / t_on:.0f} tok/s, off {tokens / t_off:.0f} tok/s; "
        f"pair ratio off/on median {statistics.median(ratios):.3f} (quartiles {q1:.3f}-{q3:.3f}, {len(ratios)} pairs)"
    )


if __name__ == "__main__":
    main()
