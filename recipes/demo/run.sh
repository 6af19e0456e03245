#!/usr/bin/env bash
# The demo (`make demo`; 14 min 35 s on 2 CPU cores, measured in docs/experiments/2026-12-03-demo.md): the
# multi30k recipe's pipeline (recipes/kd_pipeline.sh) with small budgets. A transformer teacher; two students of
# one size, one trained on the gold translations (NLL) and one on the teacher's (Seq-KD, generated through
# CTranslate2); the better student in int8 for CTranslate2; then every model's BLEU (greedy and beam 5), size and
# words/s with fairseq and with its fastest engine, and whether distillation paid (a paired bootstrap test).
#   make demo                           WORK=demo_work; rerunning skips finished stages
#   SMOKE=1 bash recipes/demo/run.sh    the same stages with tiny models on a slice (the test suite runs this)
# Every knob of the multi30k recipe is an environment variable here too (STUDENTS, TEACHER_HOURS, DATA, ...).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/recipes/lib.sh"

export PRUNE_RATIOS=${PRUNE_RATIOS-}          # no pruning: the best student goes to int8 as it is
export STUDENTS=${STUDENTS:-tf_nll tf_seqkd}  # the NLL baseline and the Seq-KD student, same architecture
export TEACHER_GOAL=${TEACHER_GOAL-}          # no teacher target: the demo's budget is minutes
export RECIPE_TITLE=${RECIPE_TITLE:-"The fairseq_kd demo: multi30k En-De, Seq-KD in minutes on CPU"}
export RECIPE_COMMAND=${RECIPE_COMMAND:-$( [ "${SMOKE:-0}" = 1 ] && printf 'SMOKE=1 bash recipes/demo/run.sh' || printf 'make demo')}
if [ "${SMOKE:-0}" = 1 ]; then
  export WORK=${WORK:-$ROOT/demo_work_smoke} STUDENT_ARCHS=${STUDENT_ARCHS:-tf=kd_transformer_e2d1_32}
else
  export WORK=${WORK:-$ROOT/demo_work}
  # the budgets (docs/experiments/2026-12-03-demo.md): a 4+4-layer 128-dim teacher (in 6 minutes it reached 22.8
  # greedy valid BLEU where a 256-dim one reached 6.7), 0.75M-parameter deep-encoder students, short warm-up
  export TEACHER_ARCH=${TEACHER_ARCH:-kd_transformer_e4d4_128} STUDENT_ARCHS=${STUDENT_ARCHS:-tf=kd_transformer_e6d1_64}
  # the teacher's budget in epochs, not minutes, so a slower machine gets the same teacher later instead of a weaker
  # one (a teacher cut at 4.5 minutes wrote looping Seq-KD data its student fell to 4.1 BLEU on); the students'
  # in minutes (one epoch, 275 updates, left them at 3-4.5 BLEU)
  export TEACHER_EPOCHS=${TEACHER_EPOCHS:-2} TEACHER_HOURS=${TEACHER_HOURS:-0} TEACHER_AVERAGE=${TEACHER_AVERAGE:-0}
  export STUDENT_HOURS=${STUDENT_HOURS:-0.025} TRACK_HOURS=${TRACK_HOURS-}  # not the full recipe's track shares
  export TRANSFORMER_LR=${TRANSFORMER_LR:-0.003}
  export TRANSFORMER_OPTIM_ARGS=${TRANSFORMER_OPTIM_ARGS:---optimizer adam --adam-betas (0.9,0.98) --lr-scheduler inverse_sqrt --warmup-updates 200}
  export TRANSFORMER_BATCH_ARGS=${TRANSFORMER_BATCH_ARGS:---max-tokens 2048}
  export DISTILL_BEAM=${DISTILL_BEAM:-1} SPEED_REPEATS=${SPEED_REPEATS:-1} LATENCY_SENTENCES=${LATENCY_SENTENCES:-0}
  export GEN_ARGS=${GEN_ARGS:---max-len-a 1.2 --max-len-b 10}  # a minutes-old model may loop to 200 tokens
fi

bash "$ROOT/recipes/multi30k_en_de/run.sh"
[ "${DRY_RUN:-0}" = 1 ] && exit 0
python3 "$HERE/summary.py" "${RESULTS_DIR:-$WORK}/${RESULTS_NAME:-results}.json"
