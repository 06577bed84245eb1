"""int8 decoding on the CPU: dynamic quantisation of a trained model (``decode.quantize=int8``).

Search spends most of its time in matrix products whose weights never change: per step, the
GRU cell's two GEMMs, the deep output's readout, the attention's query projection W_a s_{i-1}
and W_o over the whole target vocabulary.  Dynamic quantisation stores each such weight once as
int8 (one scale per output row of a Linear layer) and quantises the activations per call, so every product runs
on int8 instructions (VNNI on AVX-512 CPUs, AVX2 elsewhere) at a quarter of the weight traffic.

Unlike the rest of this package this is an *approximation*, not a faster route to the same
numbers: it is never chosen by ``model.impl``, only by the user, for decoding a trained
checkpoint (evaluate, translate, align).  What it costs in BLEU and gains in speed is measured
by ``scripts/bench.py`` (docs/performance.md); tests/unit/fast/test_quantize.py holds it to the
fp32 model's translations on a small trained model.

What is quantised (``torch.ao.quantization.quantize_dynamic``, fbgemm/oneDNN int8 kernels):

* every ``nn.Linear``: W_o (a tied W_o gets its own int8 copy; the embedding stays fp32),
  the readout [U_o V_o C_o], W_a and U_a of additive attention, W_s, Luong's W_c;
* every ``nn.GRUCell`` and ``nn.LSTMCell`` (the decoder's step).

The encoder's bidirectional RNN runs once per sentence, not once per beam and step, and stays
float (its fast implementation, if any, is kept).  The C++ attention kernel reads the keys U_a h
in float32 and is kept too.  torch marks its eager-mode quantisation API as deprecated in favour
of torchao; it is still the one with fast int8 CPU kernels for eager ``nn.Linear`` and RNN cells
in torch 2.13, and its deprecation warning is silenced here.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from pipeline.errors import UserError

QUANTIZED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.GRUCell, nn.LSTMCell)


def int8_engine() -> str | None:
    """The quantised engine torch runs int8 products with on this CPU, or None if it has none."""
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "onednn", "qnnpack"):
        if name in engines:
            return name
    return None


def quantize_int8(model: nn.Module, device: torch.device) -> list[str]:
    """Replace ``model``'s Linear layers and RNN cells in place by dynamically quantised int8 ones.

    Returns the qualified names of the modules replaced.  The model must be in eval mode and on
    the CPU: int8 kernels exist for the CPU only, and a quantised model cannot train.
    """
    if device.type != "cpu":
        raise UserError(f"decode.quantize=int8 runs on the CPU only, not on {device.type}; set device=cpu or drop it")
    engine = int8_engine()
    if engine is None:
        raise UserError("decode.quantize=int8: this torch build has no quantised CPU engine; drop decode.quantize")
    if model.training:
        raise ValueError("quantize_int8 takes a model in eval mode (decoding only)")
    names = [name for name, m in model.named_modules() if type(m) in QUANTIZED_TYPES]
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantize_per_\w+).* deprecated")
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

        # one scale per output row for the Linear layers; the cells' kernels take one scale per matrix
        spec = {t: per_channel_dynamic_qconfig if t is nn.Linear else default_dynamic_qconfig for t in QUANTIZED_TYPES}
        quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    return names
