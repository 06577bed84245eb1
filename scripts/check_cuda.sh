#!/usr/bin/env bash
# The CUDA paths, end to end, on a machine with a GPU (CI has none; about 7 minutes on one H200):
#
#   scripts/check_cuda.sh [OUT_DIR]        # default runs/cuda_check
#
# 1. the tests marked gpu (a bf16 autocast training step and beam search on CUDA against the
#    CPU) and the precision tests;
# 2. 300 updates of the default RNNsearch with train.device=auto (CUDA) and train.precision=auto
#    (fp32 on CUDA: pipeline/precision.py), then its evaluation on test with beam-5;
# 3. 20 updates of the same in bf16 through torchrun with one process per GPU (DDP over NCCL);
# 4. scripts/bench.py --device cuda, decoding with the checkpoint of step 2;
# 5. scripts/compare.sh quick with a 30-second training budget per model, report included.
# Each step runs under a time limit and logs to OUT_DIR/NAME.log; a failed step is reported and
# the next one still runs; the exit status is non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${1:-runs/cuda_check}
mkdir -p "$out"
failed=()

step() {  # step NAME SECONDS COMMAND...: run under a time limit, log, remember a failure
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 12 "$out/$name.log"
  echo "== $name: rc $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || failed+=("$name(rc $rc)")
}

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
  echo "error: CUDA is not available to $PY; run this on a machine with a GPU" >&2
  exit 2
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name())'

run="$out/bahdanau"
step tests 240 "$PY" -m pytest -q -p no:cacheprovider tests/unit/runtime/test_gpu.py tests/unit/runtime/test_precision.py
step train 240 "$PY" -m pipeline.train model=bahdanau "run_dir=$run" train.max_steps=300 train.max_epochs=null \
  train.early_stop_patience=0 train.eval_every=150 train.eval_max_sentences=500 train.log_every=50
step evaluate 120 "$PY" -m pipeline.evaluate "checkpoint=$run/checkpoints/best.pt" split=test decode=beam
step ddp 180 "$PY" -m torch.distributed.run --nproc_per_node=1 -m pipeline.train model=bahdanau \
  "run_dir=$out/ddp" train.precision=bf16 train.max_steps=20 train.max_epochs=null train.eval_every=20 \
  train.eval_max_sentences=100
step bench 300 "$PY" scripts/bench.py --device cuda --checkpoint "$run/checkpoints/best.pt" --out "$out/bench.json"
step compare 420 scripts/compare.sh quick --out "$out/quick" train.max_minutes=0.5

if [ ${#failed[@]} -gt 0 ]; then
  echo "check_cuda: FAILED: ${failed[*]} (logs in $out)"
  exit 1
fi
echo "check_cuda: all steps passed (logs in $out)"
