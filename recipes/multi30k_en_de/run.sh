#!/usr/bin/env bash
# multi30k En->De on CPU: the whole distillation pipeline of recipes/kd_pipeline.sh (teacher, baseline, Word-KD,
# Seq-KD, Seq-Inter, Seq-KD + Word-KD, block_kd, pruning, compression, speed, table) with defaults measured to
# fit about 2 hours on 2 cores. Results: $WORK/results.md (+ results.json, pareto.png).
#   bash recipes/multi30k_en_de/run.sh                 full run (WORK=work/multi30k_en_de)
#   SMOKE=1 bash recipes/multi30k_en_de/run.sh         every stage on a small slice with tiny models (minutes)
#   STAGE=prune bash recipes/multi30k_en_de/run.sh     redo from a stage on (see recipes/kd_pipeline.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/recipes/lib.sh"

: "${DATA:=$ROOT/../shared/data/multi30k}"
SRC=en TGT=de
if [ "${SMOKE:-0}" = 1 ]; then
  : "${WORK:=$ROOT/work/multi30k_en_de_smoke}" "${N_TRAIN:=600}" "${N_EVAL:=60}" "${VOCAB:=300}"
  smoke_defaults
else
  : "${WORK:=$ROOT/work/multi30k_en_de}" "${N_TRAIN:=0}" "${N_EVAL:=0}" "${VOCAB:=6000}"
  : "${TEACHER_ARCH:=kd_lstm_2x256}" "${STUDENT_ARCH:=kd_lstm_1x128}" "${TEACHER_EPOCHS:=6}" "${STUDENT_EPOCHS:=7}"
  : "${SEQ_INTER_EPOCHS:=1}" "${LATENCY_SENTENCES:=100}"
  # pruning (README, pruning benchmark): the cubic schedule over the first 2 epochs (532 updates of the full
  # corpus), masks recomputed every 20 updates, at the student's learning rate; the first validation after the
  # schedule, so its rising loss does not halve the rate
  : "${PRUNE_EPOCHS:=4}"
  : "${PRUNE_ARGS:=--prune-schedule gradual --prune-steps 532 --prune-frequency 20 --validate-after-updates 532}"
fi
RECIPE_TITLE="multi30k En-De: sequence-level knowledge distillation on CPU"
: "${RECIPE_COMMAND:=$( [ "${SMOKE:-0}" = 1 ] && printf 'SMOKE=1 ' )bash recipes/multi30k_en_de/run.sh}"  # shown in the results

for f in train.en train.de val.en val.de test2016.en test2016.de; do require_file "$DATA/$f" "(set DATA= to the multi30k directory)"; done

# N_TRAIN / N_EVAL > 0 take the first lines only (smoke runs); 0 takes everything
slice() { if [ "$2" -gt 0 ]; then head -n "$2" "$1"; else cat "$1"; fi; }
prepare_raw() {
  local l
  for l in en de; do
    slice "$DATA/train.$l" "$N_TRAIN" > "$WORK/raw/train.$l"
    slice "$DATA/val.$l" "$N_EVAL" > "$WORK/raw/valid.$l"
    slice "$DATA/test2016.$l" "$N_EVAL" > "$WORK/raw/test.$l"
  done
}

source "$ROOT/recipes/kd_pipeline.sh"
run_pipeline
