"""CUDA paths: bf16 autocast training step and decoding on the GPU (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from tinydata import tiny_model

from pipeline.config import AttentionPlacement, ContextType, DecodeConfig, Strategy
from pipeline.model import build_model
from pipeline.search import decode_sequences


@pytest.mark.gpu
@pytest.mark.parametrize("context", [ContextType.attention, ContextType.fixed, "luong"])
def test_bf16_step_and_beam_search_on_cuda_match_the_cpu(context):
    """Also Luong's placement, whose decoder GRU is a fused cuDNN call (run in fp32 under bf16 autocast)."""
    torch.manual_seed(0)
    cfg = tiny_model(ContextType.attention if context == "luong" else context)
    if context == "luong":
        cfg.attention.placement = AttentionPlacement.luong
    cpu = build_model(cfg, 50, 50).eval()
    gpu = build_model(cfg, 50, 50).cuda().eval()
    gpu.load_state_dict(cpu.state_dict())
    src = torch.randint(4, 50, (6, 9))
    src[:, -1] = 2
    lens = torch.full((6,), 9)
    tgt = torch.randint(4, 50, (6, 7))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, _ = gpu(src.cuda(), lens.cuda(), tgt.cuda())
        loss, _ = gpu(src.cuda(), lens.cuda(), tgt.cuda(), tgt.cuda(), label_smoothing=0.1)  # fused W_o + loss
    loss.backward()
    assert loss.dtype == torch.float32 and all(torch.isfinite(p.grad).all() for p in gpu.parameters())
    ref, _ = cpu(src, lens, tgt)
    torch.testing.assert_close(logits.float().cpu(), ref, atol=5e-2, rtol=5e-2)
    cfg = DecodeConfig(strategy=Strategy.beam, beam_size=3, max_len=12)
    ids = [row[:-1].tolist() for row in src]  # decode_sequences appends the EOS itself
    on_gpu, on_cpu = decode_sequences(gpu, ids, cfg), decode_sequences(cpu, ids, cfg)
    # the same best scores (tokens may differ only where two hypotheses tie to rounding)
    torch.testing.assert_close(torch.tensor([h.score for h in on_gpu]), torch.tensor([h.score for h in on_cpu]))
