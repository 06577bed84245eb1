"""CUDA paths: bf16 autocast training step and decoding on the GPU (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from tinydata import tiny_model

from pipeline.config import AttentionPlacement, ContextType, DecodeConfig, Strategy
from pipeline.data.tokenizer import PAD_ID
from pipeline.decoding.search import decode_sequences
from pipeline.fast import accelerate
from pipeline.model import build_model


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("context", [ContextType.attention, ContextType.fixed, "luong"])
def test_bf16_step_and_beam_search_on_cuda_match_the_cpu(context, impl):
    """Both implementations on the GPU (auto: the recurrence decoder in torch ops, the fused loss; Luong's
    fast decoder runs its GRU as one cuDNN call, in fp32 under bf16 autocast) against the CPU reference."""
    torch.manual_seed(0)
    cfg = tiny_model(ContextType.attention if context == "luong" else context)
    if context == "luong":
        cfg.attention.placement = AttentionPlacement.luong
    cpu = build_model(cfg, 50, 50, PAD_ID).eval()
    gpu = build_model(cfg, 50, 50, PAD_ID).cuda().eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu = accelerate(gpu, impl, torch.device("cuda")).model
    src = torch.randint(4, 50, (6, 9))
    src[:, -1] = 2
    lens = torch.full((6,), 9)
    tgt = torch.randint(4, 50, (6, 7))
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.no_grad():
        logits, _ = gpu(src.cuda(), lens.cuda(), tgt.cuda())
    ref, _ = cpu(src, lens, tgt)
    torch.testing.assert_close(logits.float().cpu(), ref, atol=5e-2, rtol=5e-2)
    gpu.train()  # cuDNN's RNN backward runs in training mode only
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _ = gpu(src.cuda(), lens.cuda(), tgt.cuda(), tgt.cuda(), label_smoothing=0.1)  # fused W_o + loss
    loss.backward()
    assert loss.dtype == torch.float32 and all(torch.isfinite(p.grad).all() for p in gpu.parameters())
    gpu.eval()
    cfg = DecodeConfig(strategy=Strategy.beam, beam_size=3, max_len=12)
    ids = [row[:-1].tolist() for row in src]  # decode_sequences appends the EOS itself
    on_gpu, on_cpu = decode_sequences(gpu, ids, cfg), decode_sequences(cpu, ids, cfg)
    # the same best scores, to fp32 rounding over a dozen summed log-probabilities (seen on an H200:
    # 9e-5 of ~47, 2e-6 relative); tokens may differ only where two hypotheses tie to rounding
    gpu_scores, cpu_scores = torch.tensor([h.score for h in on_gpu]), torch.tensor([h.score for h in on_cpu])
    torch.testing.assert_close(gpu_scores, cpu_scores, atol=1e-3, rtol=1e-5)
