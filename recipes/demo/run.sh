#!/usr/bin/env bash
# The demo (`make demo`; its wall time on 2 CPU cores is measured in docs/experiments/2026-12-03-demo.md): the
# multi30k recipe's pipeline (recipes/kd_pipeline.sh) with small budgets. A transformer teacher; two students of
# one size trained side by side, one on the gold translations (NLL) and one with word-level KD against the teacher's
# top-k cache (Word-KD: the student that beat NLL at every length measured, docs/results/demo_calibration/); the
# better student in int8 for CTranslate2; then every model's BLEU (greedy and beam 5), size and words/s with
# fairseq and with its fastest engine, and whether distillation paid (a paired bootstrap test).
#   make demo                           WORK=demo_work; rerunning skips finished stages
#   SMOKE=1 bash recipes/demo/run.sh    the same stages with tiny models on a slice (the test suite runs this)
# Every knob of the multi30k recipe is an environment variable here too (STUDENTS, TEACHER_HOURS, DATA, ...).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/recipes/lib.sh"

export PRUNE_RATIOS=${PRUNE_RATIOS-}            # no pruning: the best student goes to int8 as it is
export STUDENTS=${STUDENTS:-tf_nll tf_word_kd}  # the NLL baseline and the Word-KD student, same architecture
export TEACHER_GOAL=${TEACHER_GOAL-}            # no teacher target: the demo's budget is minutes
export STUDENT_JOBS=${STUDENT_JOBS:-2}          # the two students side by side, THREADS/2 threads each
export RECIPE_TITLE=${RECIPE_TITLE:-"The fairseq_kd demo: multi30k En-De, distillation in minutes on CPU"}
export RECIPE_COMMAND=${RECIPE_COMMAND:-$( [ "${SMOKE:-0}" = 1 ] && printf 'SMOKE=1 bash recipes/demo/run.sh' || printf 'make demo')}
if [ "${SMOKE:-0}" = 1 ]; then
  export WORK=${WORK:-$ROOT/demo_work_smoke} STUDENT_ARCHS=${STUDENT_ARCHS:-tf=kd_transformer_e2d1_32}
else
  export WORK=${WORK:-$ROOT/demo_work}
  # the budgets (docs/experiments/2026-12-03-demo.md): a 4+4-layer 128-dim teacher (in 6 minutes it reached 22.8
  # greedy valid BLEU where a 256-dim one reached 6.7), 0.75M-parameter deep-encoder students, short warm-up
  export TEACHER_ARCH=${TEACHER_ARCH:-kd_transformer_e4d4_128} STUDENT_ARCHS=${STUDENT_ARCHS:-tf=kd_transformer_e6d1_64}
  # the budgets in epochs and updates, not minutes, so a slower machine gets the same models later instead of weaker
  # ones (a teacher cut at 4.5 minutes wrote looping Seq-KD data its student fell to 4.1 BLEU on; students given
  # 1.5 minutes made 300-413 updates and 2.3-7.6 BLEU); the students 600 updates each, what fits 12 minutes (their
  # greedy valid BLEU by updates: docs/results/demo_calibration/student_curve_*.md)
  export TEACHER_EPOCHS=${TEACHER_EPOCHS:-2} TEACHER_UPDATES=${TEACHER_UPDATES:-0} TEACHER_HOURS=${TEACHER_HOURS:-0}
  export TEACHER_AVERAGE=${TEACHER_AVERAGE:-0} STUDENT_UPDATES=${STUDENT_UPDATES:-600} STUDENT_HOURS=${STUDENT_HOURS:-0}
  export TRACK_HOURS=${TRACK_HOURS-} TRACK_UPDATES=${TRACK_UPDATES-}  # not the full recipe's track budgets
  export TRANSFORMER_LR=${TRANSFORMER_LR:-0.003}
  export TRANSFORMER_OPTIM_ARGS=${TRANSFORMER_OPTIM_ARGS:---optimizer adam --adam-betas (0.9,0.98) --lr-scheduler inverse_sqrt --warmup-updates 200}
  export TRANSFORMER_BATCH_ARGS=${TRANSFORMER_BATCH_ARGS:---max-tokens 2048}
  # DISTILL_BEAM=1: greedy Seq-KD data, for STUDENTS with a tf_seqkd student
  export DISTILL_BEAM=${DISTILL_BEAM:-1} SPEED_REPEATS=${SPEED_REPEATS:-1} LATENCY_SENTENCES=${LATENCY_SENTENCES:-0}
  export GEN_ARGS=${GEN_ARGS:---max-len-a 1.2 --max-len-b 10}  # a minutes-old model may loop to 200 tokens
fi

bash "$ROOT/recipes/multi30k_en_de/run.sh"
[ "${DRY_RUN:-0}" = 1 ] || [ -n "${STOP_AFTER:-}" ] && exit 0  # no results to summarize yet
python3 "$HERE/summary.py" "${RESULTS_DIR:-$WORK}/${RESULTS_NAME:-results}.json"
