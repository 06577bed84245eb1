"""Speed-ups of the reference model, each registered for what it covers and proven equal to it.

Importing this package registers every implementation (pipeline/fast/registry.py); a model is
handed to :func:`accelerate` once, when it is built, and ``model.impl`` decides.  Nothing in
pipeline/model/ imports this package.

    encoder    packed_gru_encoder     the encoder's GRU as a packed recurrence, hand-written backward (CPU)
    decoder    recurrence_decoder     Bahdanau's decoder: teacher forcing as one recurrence (CPU, CUDA)
    decoder    fused_luong_decoder    Luong's decoder: one fused GRU call, attention for all steps at once
    criterion  fused_output_loss      output layer + label-smoothed loss, chunked, no [N, V] logits kept
    search     top_log_probs_kernel   the k best next tokens in one C++ pass (CPU)

Inside them: C++ kernels (kernels/, built on first use: cpu_kernels.py), MKL's packed and
mixed-precision GEMMs (packed_gemm.py, mixed_gemm.py, linear.py), cheaper dropout masks
(dropout.py).  How to add one: docs/architecture.md.
"""

from pipeline.fast import decoder, encoder, loss, luong, search  # noqa: F401  (each registers itself)
from pipeline.fast.registry import REGISTRY, FastImpl, Implementations, accelerate, register, select

__all__ = ["REGISTRY", "FastImpl", "Implementations", "accelerate", "register", "select"]
