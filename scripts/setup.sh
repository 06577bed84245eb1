#!/usr/bin/env bash
# Install the pipeline and its dependencies into the current Python, from the package
# registries alone.  Torch first: a torch that is already installed is kept; otherwise
# torch==2.13.0 is installed, which on a CPU machine is the CPU wheel (never the
# multi-GB CUDA build that a bare `pip install torch` would pull).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if "$PY" -c "import torch" 2>/dev/null; then
  echo "setup: keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  echo "setup: installing torch==2.13.0"
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[dev,slurm,align,serve]"
echo "setup: done"
