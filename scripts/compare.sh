#!/usr/bin/env bash
# Attention vs no attention, end to end, on the default corpus (Multi30k de->en):
#
#   scripts/compare.sh [quick|full|variants] [--models a,b,...] [--seeds 1,2,3] [--out DIR] [Hydra overrides]
#
# 1. prepares the data; 2. trains the models (default bahdanau,baseline; the variants preset:
# baseline,bahdanau,dot,general,scaled_dot, i.e. every attention score of conf/model/) with one
# Hydra multirun sweep (same data, tokenizer, budget and seed; several seeds with --seeds); 3. evaluates the
# best checkpoint of each on val and test, greedy and beam-5; 4. exports alignments of 20
# test sentences; 5. writes the report (DIR/report/report.html).
# Everything goes under DIR (default runs/<preset>/).  Running it again resumes unfinished
# training and reuses finished runs, evaluations and exports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
preset=quick
case "${1:-}" in quick|full|variants) preset=$1; shift ;; esac
out="runs/$preset"
models=bahdanau,baseline
[ "$preset" = variants ] && models=baseline,bahdanau,dot,general,scaled_dot
seeds=""
overrides=()
decode_overrides=()  # decode.* settings (e.g. decode.max_len) also apply to evaluation and alignment
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    decode.*) overrides+=("$1"); decode_overrides+=("$1"); shift ;;
    *) overrides+=("$1"); shift ;;
  esac
done
if [ -n "$seeds" ]; then
  sweep=("train.seed=$seeds" "run_dir=$out/\${model.name}-seed\${train.seed}")
else
  sweep=("run_dir=$out/\${model.name}")
fi

echo "== 1/5 prepare data (cached after the first run)"
"$PY" -m pipeline.prepare "experiment=$preset" "${overrides[@]}"

echo "== 2/5 train $models: identical data, tokenizer, budget and seed"
"$PY" -m pipeline.train -m "experiment=$preset" "model=$models" "${sweep[@]}" "${overrides[@]}"

runs=()
for dir in "$out"/*/; do
  [ -f "$dir/checkpoints/best.pt" ] && runs+=("${dir%/}")
done

echo "== 3/5 evaluate ${runs[*]} on val and test, greedy and beam-5"
for run in "${runs[@]}"; do
  for split in val test; do
    for decode in greedy beam; do
      tag=greedy; [ "$decode" = beam ] && tag=beam5-lp0.6
      result="$run/eval/$split.$tag.json"
      if [ -f "$result" ] && [ "$result" -nt "$run/checkpoints/best.pt" ]; then
        echo "   $result is up to date"
        continue
      fi
      "$PY" -m pipeline.evaluate "checkpoint=$run/checkpoints/best.pt" "split=$split" "decode=$decode" "${decode_overrides[@]}"
    done
  done
done

echo "== 4/5 alignments of 20 test sentences (attention models)"
for run in "${runs[@]}"; do
  grep -q "^  context: attention" "$run/config.yaml" || continue
  page="$run/align/test.greedy/index.html"
  if [ -f "$page" ] && [ "$page" -nt "$run/checkpoints/best.pt" ]; then
    echo "   $page is up to date"
    continue
  fi
  "$PY" -m pipeline.align "checkpoint=$run/checkpoints/best.pt" split=test num=20 formats=[png,svg] "${decode_overrides[@]}"
done

echo "== 5/5 report"
list=$(IFS=,; echo "${runs[*]}")
"$PY" -m pipeline.report "runs=[$list]" "out=$out/report"
echo "Open $out/report/report.html (TensorBoard: tensorboard --logdir $out)."
