#!/usr/bin/env python3
"""One lever's speed ratio, measured by on/off pairs of training steps in one process.

    python scripts/bench_pairs.py --switch cpu_kernels|loss_kernel|dropout_kernel|mixed_gemm|mixed_linear
    python scripts/bench_pairs.py --switch packed_gemm --precision fp32
    python scripts/bench_pairs.py --switch state_grad_f32
                                   [--precision bf16]
                                   [--reps 6]
    python scripts/bench_pairs.py --switch bf16       # bf16 autocast (on) against fp32 (off): bf16's speed-up
                                   [--device cuda] [--max-tokens 16384]

This machine is shared and its speed drifts by 10-30% within minutes, which swamps a lever of a
few percent when the two variants run in separate processes (``bench_ab.py``) or even in
separate rounds of one process.  Here every batch is run twice in a row, once with the switch
on and once off (the order alternating), so both halves of a pair see the same machine state;
the figure is the median over pairs of t_off / t_on (> 1: the lever is faster), with quartiles.

Switches (runtime, no rebuild): ``cpu_kernels``, all fused CPU kernels vs the torch ops
(``use_cpu_kernels``); ``loss_kernel``, only the loss's kernel (pipeline/model/loss.py);
``dropout_kernel``, only the dropout and maxout kernels (pipeline/model/dropout.py, decoder.py's
``maxout_dropout``); ``mixed_gemm``, MKL's bf16 GEMMs with float32 accumulation
(pipeline/model/mixed_gemm.py: the loss's weight gradient, the recurrences' ∂s and their weight
gradients, and those of :func:`pipeline.model.linear.linear`); ``mixed_linear``, only the
latter: the linear layers' bf16 weight and bias gradients from that GEMM rather than autocast's
``F.linear`` (pipeline/model/linear.py); ``state_grad_f32``, only the bf16 recurrences'
backward carrying ∂s in float32 with those GEMMs (pipeline/model/recurrence.py); ``packed_gemm``,
the fp32 recurrences' per-step products from a weight packed once by MKL
(pipeline/model/packed_gemm.py) vs ``torch.addmm``; ``bf16``, the
precision itself (bf16 autocast vs fp32, ``--precision`` ignored): the bf16/fp32 ratio without
the drift between bench.py's separately timed runs.
Default model and batches as ``bench.py`` (the first 6 batches of epoch 0, 4096 tokens; another
budget with ``--max-tokens``, at most ``max-tokens / 8`` sentences, and no fewer than 512). On the
CPU by default; ``--device cuda`` times the same on the GPU (each step synchronized), where only
the ``bf16`` switch applies (the others switch CPU paths).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pipeline.model.dropout as dropout_module  # noqa: E402
import pipeline.model.linear as linear_module  # noqa: E402
import pipeline.model.loss as loss_module  # noqa: E402
import pipeline.model.mixed_gemm as mixed_gemm  # noqa: E402
import pipeline.model.packed_gemm as packed_gemm  # noqa: E402
import pipeline.model.recurrence as recurrence  # noqa: E402
from pipeline.config import BatchConfig, DataConfig, ModelConfig, TokenizerConfig  # noqa: E402
from pipeline.model import build_model  # noqa: E402
from pipeline.model.cpu_kernels import cpu_kernels, use_cpu_kernels  # noqa: E402
from pipeline.precision import bf16_in_hardware  # noqa: E402
from pipeline.prepare import prepare  # noqa: E402
from pipeline.tokenizer import PAD_ID  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from bench import apply_training_settings, first_batches, synchronize  # noqa: E402


def _loss_kernel(on: bool) -> None:
    loss_module.cpu_kernels = cpu_kernels if on else (lambda device: None)


def _dropout_kernel(on: bool) -> None:
    dropout_module.cpu_kernels = cpu_kernels if on else (lambda device: None)  # dropout and maxout look here


def _mixed_gemm(on: bool) -> None:
    """Off: mixed_gemm's own torch-ops path, as where MKL's routine is missing."""
    mixed_gemm._mkl_gemm_bf16bf16f32 = _mkl_gemm if on else (lambda: None)


def _mixed_linear(on: bool) -> None:
    linear_module._mixed = _mixed if on else (lambda x, weight: False)


def _packed_gemm(on: bool) -> None:
    packed_gemm._mkl_packed_sgemm = _packed if on else (lambda: None)


def _state_grad_f32(on: bool) -> None:
    recurrence._carry_state_gradient_in_f32 = _carry if on else (lambda *args: False)


_mkl_gemm = mixed_gemm._mkl_gemm_bf16bf16f32
_carry = recurrence._carry_state_gradient_in_f32
_mixed = linear_module._mixed
_packed = packed_gemm._mkl_packed_sgemm
SWITCHES = {
    "cpu_kernels": use_cpu_kernels,
    "loss_kernel": _loss_kernel,
    "dropout_kernel": _dropout_kernel,
    "mixed_gemm": _mixed_gemm,
    "state_grad_f32": _state_grad_f32,
    "mixed_linear": _mixed_linear,
    "packed_gemm": _packed_gemm,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switch", choices=sorted([*SWITCHES, "bf16"]), required=True)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--reps", type=int, default=6, help="passes over the 6 batches (pairs = 6 x reps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--max-tokens", type=int, default=BatchConfig().max_tokens, help="padded positions per batch")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available here")
    if args.switch == "packed_gemm" and args.precision != "fp32":
        parser.error("--switch packed_gemm switches an fp32 path; add --precision fp32")
    if device.type == "cuda" and args.switch != "bf16":
        parser.error(f"--switch {args.switch} switches a CPU path; on --device cuda only --switch bf16 applies")
    torch.set_num_threads(args.threads)
    apply_training_settings()
    autocast = {"bf16": args.precision == "bf16"}
    if (args.switch == "bf16" or autocast["bf16"]) and not bf16_in_hardware(device):
        print(
            f"note: this {device.type.upper()} has no bf16 instructions; its bf16 steps are emulated (19x an fp32 "
            "step on an AVX2-only CPU), so this run takes far longer than its usual ~2 minutes",
            file=sys.stderr,
        )

    def precision_switch(on: bool) -> None:
        autocast["bf16"] = on

    switch = precision_switch if args.switch == "bf16" else SWITCHES[args.switch]

    data = prepare(DataConfig(), TokenizerConfig(), BatchConfig())
    torch.manual_seed(0)
    model = build_model(ModelConfig(), len(data.tokenizer.src), len(data.tokenizer.tgt)).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    default = BatchConfig()
    budget = BatchConfig(args.max_tokens, max(default.max_sentences, args.max_tokens // 8))
    batches = first_batches(data, 6, device=device, batch=budget)

    def step(b) -> float:
        synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast["bf16"]):
            loss_sum, _ = model(b.src, b.src_lens, b.tgt_in, b.tgt_out, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        (loss_sum / int((b.tgt_out != PAD_ID).sum())).backward()
        opt.step()
        synchronize(device)
        return time.perf_counter() - t0

    for on in (True, False):  # warm-up: every GEMM shape compiled, every kernel built, both ways
        switch(on)
        for b in batches:
            step(b)
    ratios, t_on, t_off = [], 0.0, 0.0
    for rep in range(args.reps):
        for i, b in enumerate(batches):
            times = {}
            for on in (True, False) if (rep + i) % 2 == 0 else (False, True):
                switch(on)
                times[on] = step(b)
            ratios.append(times[False] / times[True])
            t_on, t_off = t_on + times[True], t_off + times[False]
    switch(True)
    tokens = sum(int((b.tgt_out != PAD_ID).sum()) for b in batches) * args.reps
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    label = "bf16 (on) vs fp32 (off)" if args.switch == "bf16" else f"{args.precision} {args.switch}"
    print(
        f"{label}: on {tokens / t_on:.0f} tok/s, off {tokens / t_off:.0f} tok/s; "
        f"pair ratio off/on median {statistics.median(ratios):.3f} (quartiles {q1:.3f}-{q3:.3f}, {len(ratios)} pairs)"
    )


if __name__ == "__main__":
    main()
