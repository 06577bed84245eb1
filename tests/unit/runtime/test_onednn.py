"""pipeline.runtime.onednn: the size of oneDNN's compiled-kernel cache takes effect in this process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

PROBE = """
import sys, torch
from pipeline.runtime.onednn import set_primitive_cache_capacity
set_primitive_cache_capacity(int(sys.argv[1]))  # after `import torch`, before the first GEMM
w = torch.randn(256, 256, dtype=torch.bfloat16)
for m in range(100, 112):  # 12 GEMM shapes, then the first one again
    torch.randn(m, 256, dtype=torch.bfloat16) @ w
print("REVISIT", flush=True)
torch.randn(100, 256, dtype=torch.bfloat16) @ w
"""


def _revisit(capacity: int) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    env["ONEDNN_VERBOSE"] = "all"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(capacity)], env=env, capture_output=True, text=True, check=True
    ).stdout
    after = out.split("REVISIT", 1)[1]
    return "hit" if "create:cache_hit" in after else "miss" if "create:cache_miss" in after else "none"


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_cache_capacity_decides_whether_a_shape_is_compiled_again():
    """With room for 8 kernels the first of 12 shapes was evicted and is compiled again;
    with room for 64 it is found.  Read from oneDNN's own log, not from timings."""
    small, large = _revisit(8), _revisit(64)
    if "none" in (small, large):
        pytest.skip("this CPU runs these bf16 GEMMs outside oneDNN")
    assert (small, large) == ("miss", "hit")


def test_an_environment_setting_wins(monkeypatch):
    from pipeline.runtime.onednn import ENV, set_primitive_cache_capacity

    monkeypatch.setenv(ENV, "123")
    set_primitive_cache_capacity(16384)
    assert os.environ[ENV] == "123"
