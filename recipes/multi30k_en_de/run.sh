#!/usr/bin/env bash
# multi30k En->De on CPU: the distillation pipeline of recipes/kd_pipeline.sh (a transformer teacher; LSTM and
# transformer students, NLL and Seq-KD; pruning, compression, speed with the fastest engines, table) with defaults
# measured to fit 2 h 15 min on 2 cores. Results: $WORK/results.md (+ results.json, results.png).
#   bash recipes/multi30k_en_de/run.sh                 full run (WORK=work/multi30k_en_de)
#   SMOKE=1 bash recipes/multi30k_en_de/run.sh         every stage on a small slice with tiny models (minutes)
#   STAGE=prune bash recipes/multi30k_en_de/run.sh     redo from a stage on (see recipes/kd_pipeline.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/recipes/lib.sh"

SRC=en TGT=de
if [ "${SMOKE:-0}" = 1 ]; then
  : "${WORK:=$ROOT/work/multi30k_en_de_smoke}" "${N_TRAIN:=600}" "${N_EVAL:=60}" "${VOCAB:=300}"
  # both tracks and the transformer teacher, tiny (the teacher 2.5x the students, for the best-student targets)
  : "${TEACHER_ARCH:=kd_transformer_e2d2_64}" "${STUDENT_ARCHS:=lstm=kd_lstm_1x32 tf=kd_transformer_e2d1_32}"
  : "${STUDENTS:=lstm_nll lstm_seqkd tf_nll tf_seqkd tf_seqkd_word_kd}"  # the other objectives: the WMT14/IWSLT smoke runs
  : "${TEACHER_EPOCHS:=2}" "${TEACHER_AVERAGE:=2}" "${PATIENCE:=2}" "${PRUNE_EPOCHS:=2}" "${PRUNE_SCHEDULE_EPOCHS:=1}"
  smoke_defaults
else
  : "${WORK:=$ROOT/work/multi30k_en_de}" "${N_TRAIN:=0}" "${N_EVAL:=0}" "${VOCAB:=6000}"
  # the budgets are updates, the same models on any machine (docs/experiments/2026-12-04-update-budgets.md); the
  # hours are the guard that keeps a slower machine inside 2 h 15 min on 2 cores, where they end training first
  # the teacher (docs/experiments/2026-12-02-teacher-calibration.md, 2026-12-06-teacher-updates.md): a 3+3-layer
  # 256-dim transformer, lr 3e-3, 2,130 updates (15 epochs), the average of its last 5 epochs when that is better
  : "${TEACHER_ARCH:=kd_transformer_e3d3_256}" "${TEACHER_EPOCHS:=100}" "${TEACHER_UPDATES:=2130}" "${TEACHER_HOURS:=1.0}"
  : "${TEACHER_AVERAGE:=5}" "${TRANSFORMER_LR:=0.003}"
  # the students: the paper's LSTM track and a deep-encoder shallow-decoder transformer track, NLL and Seq-KD on each,
  # two at a time side by side (1 thread each), each until validation stops improving or its budget ends; Seq-KD +
  # Word-KD (tf_seqkd_word_kd) is one STUDENTS= away: it added -0.02 BLEU over NLL for 15 minutes in the 2026-12-06 run
  : "${STUDENT_ARCHS:=lstm=kd_lstm_1x128 tf=kd_transformer_e6d1_128}"
  : "${STUDENTS:=lstm_nll lstm_seqkd tf_nll tf_seqkd}"
  : "${STUDENT_EPOCHS:=100}" "${STUDENT_HOURS:=0.15}" "${PATIENCE:=3}" "${STUDENT_JOBS:=2}"
  # the tracks' own budgets, for the default tracks this run has (STUDENT_ARCHS=tf=... alone has no lstm budget)
  track_defaults() {  # track_defaults TRACK=N...: the entries of the tracks in STUDENT_ARCHS
    local entry out=
    for entry in "$@"; do case " $STUDENT_ARCHS " in *" ${entry%%=*}="*) out="$out $entry" ;; esac; done
    echo "${out# }"
  }
  [ -n "${TRACK_UPDATES+set}" ] || TRACK_UPDATES=$(track_defaults lstm=2400 tf=1400)
  [ -n "${TRACK_HOURS+set}" ] || TRACK_HOURS=$(track_defaults lstm=0.3 tf=0.5)
  : "${SEQ_INTER_EPOCHS:=1}" "${LATENCY_SENTENCES:=100}"
  # pruning (docs/experiments/2026-11-27-lr-rewinding.md): retrained at the student's own learning rate, the cubic
  # schedule over its first epoch (in the student's own updates), masks recomputed every 20 updates, the first
  # validation after the schedule, so its rising loss does not halve the rate
  : "${PRUNE_RATIOS=0.0 0.8 0.9}" "${PRUNE_EPOCHS:=3}" "${PRUNE_SCHEDULE_EPOCHS:=1}" "${PRUNE_ARGS:=--prune-frequency 20}"
fi
: "${TEACHER_GOAL=33}"  # TEACHER_GOAL= (empty): no teacher target
: "${RECIPE_TITLE:=multi30k En-De: sequence-level knowledge distillation on CPU}"
: "${RECIPE_COMMAND:=$( [ "${SMOKE:-0}" = 1 ] && printf 'SMOKE=1 ' )bash recipes/multi30k_en_de/run.sh}"  # shown in the results

# DATA unset: the project machines' copy, else fetched from the public release into $WORK/data (recipes/lib.sh)
DATA=$(multi30k_data)
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
