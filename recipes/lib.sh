# Shared helpers for the recipes (sourced, not run). Each stage writes its outputs, then a stamp
# `$WORK/.done/<stage>`; a rerun skips stamped stages, and fairseq-train itself resumes from
# checkpoint_last.pt, so an interrupted recipe restarts where it stopped.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# the tools (fairseq-train, fairseq-kd-*, and the python3 that imports fairseq_kd): from PATH, else from the
# project's .venv/ (`make install`), else one line saying how to get them. $ROOT: the caller's project root.
if ! command -v fairseq-kd-spm > /dev/null && [ -x "$ROOT/.venv/bin/fairseq-kd-spm" ]; then PATH="$ROOT/.venv/bin:$PATH"; fi
command -v fairseq-kd-spm > /dev/null \
  || die "the fairseq-kd tools are not on PATH: run 'make install' in $ROOT (it builds .venv/), or install the package into your environment"

stage_done() { [ -f "$WORK/.done/$1" ]; }
mark_done() { mkdir -p "$WORK/.done"; date +%s > "$WORK/.done/$1"; }

# run_stage NAME FUNCTION [ARGS...]: skip when stamped, time it, log to $WORK/logs/NAME.log
run_stage() {
  local name=$1 fn=$2 start
  shift 2
  if stage_done "$name"; then
    # a stamped stage whose outputs are no longer valid (a cache whose teacher changed) stops the recipe
    if declare -F check_stage_outputs > /dev/null; then check_stage_outputs "$name"; fi
    log "stage $name: done already (rm $WORK/.done/$name to redo)"; return
  fi
  mkdir -p "$WORK/logs"
  log "stage $name: start (log: $WORK/logs/$name.log)"
  start=$(date +%s)
  # errexit must hold inside the stage (a subshell with set -e, not a tested context, where bash would ignore
  # it), and the stage's own status must be read from PIPESTATUS before any other command runs
  local status
  set +e
  ( set -e; "$fn" "$@" ) 2>&1 | tee -a "$WORK/logs/$name.log" | grep --line-buffered -E "$PROGRESS_PATTERN" \
    | sed -u "s|^|${STAGE_PREFIX:-}|" >&2  # STAGE_PREFIX: the stage's name, when stages run side by side
  status=${PIPESTATUS[0]}
  set -e
  [ "$status" -eq 0 ] || die "stage $name failed (exit $status), see $WORK/logs/$name.log"
  mark_done "$name"
  echo "$name $(( $(date +%s) - start ))" >> "$WORK/stage_times.txt"
  log "stage $name: done in $(( $(date +%s) - start ))s"
}

# lines of fairseq's logs worth showing while a stage runs
PROGRESS_PATTERN='(\| (train|valid) \| epoch|BLEU|words/s|sparsity|wrote|Translated|error|Error)'

# SMOKE=1: every stage with tiny models, one epoch each and short decodes (each recipe picks its own data slice)
smoke_defaults() {
  : "${TEACHER_ARCH:=kd_lstm_1x32}" "${STUDENT_ARCHS:=lstm=kd_lstm_1x32}" "${TEACHER_EPOCHS:=1}" "${STUDENT_EPOCHS:=1}"
  : "${SEQ_INTER_EPOCHS:=1}" "${PRUNE_EPOCHS:=1}" "${LATENCY_SENTENCES:=10}" "${BEAM:=2}" "${NBEST:=2}" "${TOPK:=4}"
  : "${SPEED_REPEATS:=1}"
  : "${GEN_ARGS:=--max-len-a 1.2 --max-len-b 5}"  # an untrained teacher would write 200-token loops
}

# multi30k_data: the multi30k directory (train, val, test2016 .en/.de) a recipe reads: $DATA when set; else the
# project machines' copy ($MULTI30K_SHARED, default ../shared/data/multi30k) when present; else $WORK/data/multi30k,
# fetched once from the public release and checked by sha256 (recipes/multi30k_en_de/fetch.py; MULTI30K_MIRROR=URL
# for a mirror of the .gz files). Use as DATA=$(multi30k_data).
multi30k_data() {
  local shared=${MULTI30K_SHARED:-$ROOT/../shared/data/multi30k}
  if [ -n "${DATA:-}" ]; then echo "$DATA"; return; fi
  if [ -d "$shared" ]; then echo "$shared"; return; fi
  python3 "$ROOT/recipes/multi30k_en_de/fetch.py" "$WORK/data/multi30k" >&2 || exit 1  # it said why, in one line
  echo "$WORK/data/multi30k"
}

# require_count NAME MIN WHAT: $NAME holds an integer >= MIN (0 or 1), else one line saying so (checked before any
# stage, so a typo does not surface after the teacher has trained)
require_count() {
  local value=${!1} kind=positive pattern='^[1-9][0-9]*$'
  if [ "$2" = 0 ]; then kind=non-negative pattern='^(0|[1-9][0-9]*)$'; fi
  [[ $value =~ $pattern ]] || die "$1 must be a $kind integer ($3), got '$value'"
}

require_file() { [ -s "$1" ] || die "missing input: $1 ${2:-}"; }
