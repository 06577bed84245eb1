#!/usr/bin/env bash
# Attention vs no attention, end to end, on the default corpus (Multi30k de->en):
#   scripts/compare.sh [quick|full] [extra Hydra overrides, e.g. data.src_lang=fr]
# Everything goes under runs/<preset>/.  Running it again resumes unfinished training
# and reuses finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
preset=${1:-quick}
case "$preset" in quick|full) shift || true ;; *) preset=quick ;; esac
out="runs/$preset"

echo "== 1/2 prepare data (cached after the first run)"
"$PY" -m pipeline.prepare "experiment=$preset" "$@"

echo "== 2/2 train bahdanau and baseline under identical data, tokenizer, budget and seed"
"$PY" -m pipeline.train -m "experiment=$preset" model=bahdanau,baseline "run_dir=$out/\${model.name}" "$@"

echo
echo "Trained: $out/bahdanau and $out/baseline (checkpoints, metrics.jsonl, TensorBoard: tensorboard --logdir $out)."
echo "Not built yet: evaluation on test (issue #4), alignment plots (#5) and the side-by-side report (#6);"
echo "this script stops after training until they land."
