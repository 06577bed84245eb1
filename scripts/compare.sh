#!/usr/bin/env bash
# Attention vs no attention, end to end, on the default corpus (Multi30k de->en):
#
#   scripts/compare.sh [quick|full|variants] [--models a,b,...] [--seeds 1,2,3 | seeds=N] [--out DIR]
#                      [--gold DIR|none] [--guided W] [--average N] [--ema D] [Hydra overrides]
#
# 1. prepares the data; 2. trains the models (default bahdanau,baseline; the variants preset:
# baseline,bahdanau,dot,general,scaled_dot, i.e. every attention score of conf/model/) with one
# Hydra multirun sweep (same data, tokenizer, budget and seed; several seeds with --seeds), and with
# --guided W also RNNsearch with guided alignment of weight W (bahdanau_guided); 3. evaluates the
# best checkpoint of each on val and test, greedy and beam-5; 4. exports alignments of 20
# test sentences and scores the attention against every gold alignment set of the run's language
# pair (AER; --gold DIR: folders NAME-L1-L2/ holding test.L1, test.L2 and gold.talp; default
# ../shared/data/alignment beside the repo when it exists; a failed AER only warns), with eflomal
# beside the first attention run of each set as the yardstick (pipeline.align method=both); 5. writes
# the report (DIR/report/report.html).
# Beside the main rows: every further Multi30k test set found (test_2017_flickr, ...) is evaluated
# too; --average N averages each run's last N checkpoints (pipeline.average) and --ema D keeps an
# EMA of the weights (train.ema.decay=D, validation still on the trained weights, so training is
# unchanged), each evaluated on test; with two seeds or more, each model's first two seeds are also
# decoded as an ensemble.  seeds=N trains N seeds per arm (1234, 1235, ...) and turns on
# --average 5 and --ema 0.9999 unless given.
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
gold=""
guided=""
average=""
ema=""
extras=""  # seeds=N: also --average 5 --ema 0.9999 unless given
overrides=()
decode_overrides=()  # decode.* settings (e.g. decode.max_len) also apply to evaluation and alignment
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --gold) gold=$2; shift 2 ;;
    --guided) guided=$2; shift 2 ;;
    --average) average=$2; shift 2 ;;
    --ema) ema=$2; shift 2 ;;
    seeds=*) n=${1#seeds=}; [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "error: $1: give seeds=N with N >= 1" >&2; exit 2; }
             seeds=$(seq -s, 1234 $((1233 + n))); extras=1; shift ;;
    decode.*) overrides+=("$1"); decode_overrides+=("$1"); shift ;;
    *) overrides+=("$1"); shift ;;
  esac
done
if [ -z "$gold" ]; then
  gold=none; [ -d ../shared/data/alignment ] && gold=../shared/data/alignment
elif [ "$gold" != none ]; then  # like --out, relative to the repository root
  [ -d "$gold" ] || { echo "error: --gold $gold is not a folder; give the folder of NAME-L1-L2/ gold sets, or --gold none" >&2; exit 2; }
fi
if [ -n "$extras" ]; then average=${average:-5}; ema=${ema:-0.9999}; fi
train_extras=()  # neither changes what is trained: more step files kept, an EMA carried beside
[ -n "$average" ] && train_extras+=("train.keep_checkpoints=$(( average > 3 ? average : 3 ))")
[ -n "$ema" ] && train_extras+=("train.ema.decay=$ema" "train.ema.validate=false")
if [ -n "$seeds" ]; then
  sweep=("train.seed=$seeds" "run_dir=$out/\${model.name}-seed\${train.seed}")
else
  sweep=("run_dir=$out/\${model.name}")
fi
prepare_guided=()
[ -n "$guided" ] && prepare_guided=("train.guided_alignment.weight=$guided")  # its links, computed once

echo "== 1/5 prepare data (cached after the first run)"
"$PY" -m pipeline.prepare "experiment=$preset" "${prepare_guided[@]}" "${overrides[@]}"

echo "== 2/5 train $models: identical data, tokenizer, budget and seed"
"$PY" -m pipeline.train -m "experiment=$preset" "model=$models" "${sweep[@]}" "${train_extras[@]}" "${overrides[@]}"
if [ -n "$guided" ]; then
  echo "   and bahdanau_guided: RNNsearch with train.guided_alignment.weight=$guided"
  "$PY" -m pipeline.train -m "experiment=$preset" model=bahdanau model.name=bahdanau_guided \
    "train.guided_alignment.weight=$guided" "${sweep[@]}" "${train_extras[@]}" "${overrides[@]}"
fi

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

up_to_date() {  # $1 was written after the run's best checkpoint
  if [ -f "$1" ] && [ "$1" -nt "$2/checkpoints/best.pt" ]; then
    echo "   $1 is up to date"
    return 0
  fi
  return 1
}

beam_tag=beam5-lp0.6
config_value() {  # $1: run dir, $2: key, $3: section of its config.yaml (default data)
  "$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])' "$1/config.yaml" "${3:-data}" "$2"
}
echo "   further test sets, averaged checkpoints, EMA weights and ensembles (beam-5, as the report)"
declare -A seeds_of=()  # model name -> its runs' best checkpoints, comma-separated
for run in "${runs[@]}"; do
  for split in $("$PY" -c 'import sys, yaml
from pipeline.config import DataConfig, to_object
from pipeline.data.corpus import available_test_sets
print(" ".join(available_test_sets(to_object(yaml.safe_load(open(sys.argv[1]))["data"], DataConfig))[1:]))' "$run/config.yaml"); do
    up_to_date "$run/eval/$split.$beam_tag.json" "$run" ||
      "$PY" -m pipeline.evaluate "checkpoint=$run/checkpoints/best.pt" "split=$split" decode=beam "${decode_overrides[@]}"
  done
  if [ -n "$average" ]; then
    avg="$run/checkpoints/average-last$average.pt"
    if ! up_to_date "$run/eval/test.$beam_tag.average-last$average.json" "$run"; then
      "$PY" -m pipeline.average "run_dir=$run" "last=$average" &&
        "$PY" -m pipeline.evaluate "checkpoint=$avg" split=test decode=beam "${decode_overrides[@]}"
    fi
  fi
  if [ -n "$ema" ]; then
    up_to_date "$run/eval/test.$beam_tag.ema.json" "$run" ||
      "$PY" -m pipeline.evaluate "checkpoint=$run/checkpoints/last.pt" weights=ema split=test decode=beam "${decode_overrides[@]}"
  fi
  name=$(config_value "$run" name model)
  seeds_of[$name]="${seeds_of[$name]:+${seeds_of[$name]},}$run/checkpoints/best.pt"
done
for name in "${!seeds_of[@]}"; do
  IFS=, read -r -a members <<< "${seeds_of[$name]}"
  [ "${#members[@]}" -ge 2 ] || continue
  first=$(dirname "$(dirname "${members[0]}")")
  up_to_date "$first/eval/test.$beam_tag.ensemble2.json" "$first" ||
    "$PY" -m pipeline.evaluate "checkpoint=[${members[0]},${members[1]}]" split=test decode=beam "${decode_overrides[@]}"
done

echo "== 4/5 alignments of 20 test sentences and AER on gold alignments (attention models)"
yardstick=" "  # gold sets that eflomal has scored already (once per set: it does not depend on the model)
for run in "${runs[@]}"; do
  grep -q "^  context: attention" "$run/config.yaml" || continue
  ckpt="$run/checkpoints/best.pt"
  up_to_date "$run/align/test.greedy/index.html" "$run" ||
    "$PY" -m pipeline.align "checkpoint=$ckpt" split=test num=20 formats=[png,svg] "${decode_overrides[@]}"
  [ "$gold" != none ] || continue
  read -r src tgt < <("$PY" -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1]))["data"]; print(d["src_lang"], d["tgt_lang"])' "$run/config.yaml")
  scored=0
  for gold_dir in "$gold"/*-*-*/; do
    gold_dir=${gold_dir%/}
    name=$(basename "$gold_dir")
    first=${name%-*}; first=${first##*-}  # NAME-L1-L2: the gold's i indexes L1
    [ -f "$gold_dir/gold.talp" ] && [ -f "$gold_dir/test.$src" ] && [ -f "$gold_dir/test.$tgt" ] || continue
    scored=$((scored + 1))
    method=attention
    if [[ "$yardstick" != *" $name "* ]]; then method=both; yardstick+="$name "; fi
    [ "$method" = both ] && [ ! -f "$run/aer/$name/eflomal/aer.json" ] && rm -f "$run/aer/$name/aer.json"
    up_to_date "$run/aer/$name/aer.json" "$run" && continue
    source_first=false; [ "$first" = "$src" ] && source_first=true
    "$PY" -m pipeline.align "checkpoint=$ckpt" "src_file=$gold_dir/test.$src" "ref_file=$gold_dir/test.$tgt" \
      "gold=$gold_dir/gold.talp" "gold_source_first=$source_first" num=5 "out=$run/aer/$name" "method=$method" ||
      echo "warning: AER of $run on $name failed (see above); the report goes on without it" >&2
  done
  [ "$scored" -gt 0 ] || echo "   no gold alignment set in $gold for $src-$tgt: no AER for $run"
done

echo "== 5/5 report"
list=$(IFS=,; echo "${runs[*]}")
"$PY" -m pipeline.report "runs=[$list]" "out=$out/report"
echo "Open $out/report/report.html (TensorBoard: tensorboard --logdir $out)."
