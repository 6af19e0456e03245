# The distillation pipeline shared by the recipes (sourced, not run). A recipe sets its defaults, defines
# `prepare_raw` (writes untokenized, aligned $WORK/raw/{train,valid,test}.{$SRC,$TGT}), sources this file and
# calls `run_pipeline`. Stages, in order (each skipped once stamped in $WORK/.done, see recipes/lib.sh):
#
#   prepare          prepare_raw; joint sentencepiece model trained on train only; fairseq-preprocess
#   teacher          teacher ($TEACHER_ARCH), label-smoothed NLL; with TEACHER_AVERAGE=N the average of its last N
#                    epochs (fairseq-kd-average) when it beats checkpoint_best.pt on greedy valid BLEU
#   topk             teacher top-k cache over train (fairseq-kd-dump-topk) for the offline word_kd students
#   seqkd_data       teacher beam $DISTILL_BEAM over train (fairseq-kd-distill, engine $DISTILL_ENGINE): the distilled
#                    corpus, $NBEST-best, Seq-Inter selection
#   topk_seqkd       teacher top-k cache over the distilled corpus
#   student_T_O      one stage per entry of $STUDENTS, after all of the above (STUDENT_JOBS=N: N at a time, side by
#                    side): track T's architecture (see STUDENT_ARCHS) trained with objective O:
#                      nll             NLL on the gold data (the baseline)
#                      word_kd         word_kd against the cache (WORD_KD_TEACHER=online runs the teacher instead)
#                      seqkd           NLL on the distilled corpus (Seq-KD)
#                      seqkd_seqinter  the track's Seq-KD student fine-tuned with seq_inter (gold + closest K-best)
#                      seqkd_word_kd   word_kd on the distilled corpus (Seq-KD + Word-KD)
#                      block_kd        block_kd (online teacher)
#   prune            best student by greedy valid BLEU, pruned class-blind to $PRUNE_RATIOS and retrained
#                    with $PRUNE_OBJECTIVE (0.0: retrained unpruned, the reference of the pruning targets);
#                    PRUNE_RATIOS= (set and empty) leaves this stage out
#   compress         every model without optimizer state (models/, the dense fp32 files), the $PRUNE_COMPRESS_RATIO
#                    pruned model as sparse and as sparse+int8, and the best student (the one pruned, else the best
#                    greedy valid BLEU) in int8 for its fastest engine (a CTranslate2 int8 export of a transformer,
#                    a fairseq-kd-compress --int8 file of a kd_lstm)
#   speed            every model: greedy and beam $BEAM, batched (all of test, with BLEU; hypotheses in $WORK/hyps),
#                    and all but the pruned ones at batch 1 (LATENCY_SENTENCES=0: batched only), with fairseq and
#                    with each model's fastest engine ($SPEED_ENGINES)
#   report           table (markdown), Pareto plot (PNG), results JSON and $WORK/results.md with the targets
#
# STAGE=name starts at that stage (clearing its stamp and the later ones); STOP_AFTER=name ends after it; DRY_RUN=1
# checks the settings and lists the stages and the students' budgets, running nothing.
# Stamps only: a model already trained resumes from $WORK/<model>/checkpoint_last.pt (the log says so), so to
# retrain one with other settings remove its directory (e.g. rm -r $WORK/pruned_* before STAGE=prune).
# Every size, epoch count, time budget, learning rate and thread count is an environment variable (see the defaults
# below). Training runs `$TRAIN_CMD` (default fairseq-train): on GPUs fairseq-train uses every visible device by
# itself; for several nodes set TRAIN_CMD to fairseq's torchrun form and TRAIN_EXTRA to fairseq's distributed options.

: "${THREADS:=2}"
: "${VOCAB:=8000}" "${SPM_TYPE:=unigram}" "${SPM_COVERAGE:=1.0}"
: "${TEACHER_ARCH:=kd_lstm_2x500}"
# STUDENT_ARCHS: the student tracks, TRACK=ARCH each (a track name is letters and digits); STUDENTS: TRACK_OBJECTIVE
: "${STUDENT_ARCHS:=lstm=kd_lstm_2x100}"
: "${STUDENTS:=lstm_nll lstm_word_kd lstm_seqkd lstm_seqkd_seqinter lstm_seqkd_word_kd lstm_block_kd}"
# budgets: at most *_EPOCHS epochs, at most *_UPDATES updates (fairseq's --max-update; 0: no limit; the students'
# not for the Seq-Inter fine-tuning, SEQ_INTER_EPOCHS), at most *_HOURS hours of training (fairseq's
# --stop-time-hours, kept across resumes; 0: no limit), whichever ends first, and with PATIENCE=N the teacher and
# students stop after N validations without a better loss. A budget in updates trains the same model on any
# machine, one in hours does not: hours are the guard that keeps a slow machine's run inside its time.
: "${TEACHER_EPOCHS:=10}" "${STUDENT_EPOCHS:=10}" "${TEACHER_HOURS:=0}" "${STUDENT_HOURS:=0}" "${PATIENCE:=-1}"
: "${TEACHER_UPDATES:=0}" "${STUDENT_UPDATES:=0}"
require_count TEACHER_UPDATES 0 "the teacher's updates, 0 for no limit"
require_count STUDENT_UPDATES 0 "the students' updates, 0 for no limit"
# STUDENT_JOBS=N: up to N students train side by side, each with THREADS/N threads (two 1-thread students side by
# side trained 1.18x faster than one after the other at 2 threads: benchmarks/demo_calibration/threads.sh); with
# hours budgets, each student then has its hours at fewer threads
: "${STUDENT_JOBS:=1}"
require_count STUDENT_JOBS 1 "the students trained side by side"
: "${TEACHER_AVERAGE:=0}"
# TRACK_HOURS / TRACK_UPDATES: a track's own student budgets, TRACK=N each (e.g. TRACK_UPDATES="lstm=1500 tf=800"),
# over STUDENT_HOURS / STUDENT_UPDATES
: "${TRACK_HOURS:=}" "${TRACK_UPDATES:=}"
# training settings by model family (kd_lstm*: LSTM_*, everything else: TRANSFORMER_*), for teachers and students
: "${LSTM_LR:=0.002}" "${LSTM_ARGS:=}"
: "${LSTM_OPTIM_ARGS:=--optimizer adam --lr-scheduler reduce_lr_on_plateau --lr-shrink 0.5 --clip-norm 5}"
: "${LSTM_BATCH_ARGS:=--max-tokens 2000}"
: "${TRANSFORMER_LR:=0.002}" "${TRANSFORMER_ARGS:=}"
: "${TRANSFORMER_OPTIM_ARGS:=--optimizer adam --adam-betas (0.9,0.98) --lr-scheduler inverse_sqrt --warmup-updates 400}"
: "${TRANSFORMER_BATCH_ARGS:=--max-tokens 4096}"
: "${TRAIN_EXTRA:=}" "${TRAIN_CMD:=fairseq-train}"
: "${LABEL_SMOOTHING:=0.1}"
: "${KD_ALPHA:=0.5}" "${KD_TEMPERATURE:=1}" "${TOPK:=8}" "${WORD_KD_TEACHER:=topk}"
: "${BLOCK_KD_ARGS:=--block-mode word --block-score teacher-gold --block-weighting confidence --block-threshold 0.1}"
: "${BEAM:=5}" "${NBEST:=5}" "${GEN_MAX_TOKENS:=6000}" "${GEN_ARGS:=}"  # GEN_ARGS: fairseq generation options for every decoding
: "${DISTILL_ENGINE:=auto}"  # the Seq-KD data's decoder (fairseq-kd-distill --engine): auto is the teacher's fastest
: "${EVAL_ENGINE:=auto}"     # the engine of each model's greedy valid BLEU (fairseq's greedy output, found faster)
: "${DISTILL_BEAM:=$BEAM}"    # the Seq-KD data's beam (its n-best: NBEST, at most this beam)
: "${SEQ_INTER_ALPHA:=0.5}" "${SEQ_INTER_EPOCHS:=2}" "${SEQ_INTER_LR:=0.0005}"
: "${PRUNE_STUDENT:=auto}" "${PRUNE_RATIOS=0.0 0.5 0.8 0.9}" "${PRUNE_EPOCHS:=2}"
# retraining restarts at the student's own learning rate (its family's, when PRUNE_LR is empty: "learning-rate
# rewinding", Renda et al. 2020): on multi30k it recovered 90 % pruning to within 0.6 BLEU of the control, against
# 1.7 at a quarter of the rate
: "${PRUNE_LR:=}"
: "${PRUNE_COMPRESS_RATIO:=0.8}"
# PRUNE_OBJECTIVE: own      the student's own objective (seq_inter for the Seq-Inter student, NLL on its targets else)
#                  word_kd  word_kd against the teacher's top-k cache ($TOPK) over the student's targets
#                  self_kd  word_kd against the unpruned student's own top-k cache over its targets: the pruned
#                           model is pulled towards the dense model it replaces (the cache, $WORK/topk_self_<student>,
#                           is written once in the prune stage; remove it if that student is retrained)
: "${PRUNE_OBJECTIVE:=own}"
case $PRUNE_OBJECTIVE in own|word_kd|self_kd) ;; *) die "unknown PRUNE_OBJECTIVE '$PRUNE_OBJECTIVE' (own, word_kd or self_kd)" ;; esac
require_count DISTILL_BEAM 1 "the Seq-KD data's beam"
: "${PRUNE_ARGS:=}"              # more translation_prune options, e.g. --prune-schedule gradual --prune-steps 200
: "${PRUNE_SCHEDULE_EPOCHS:=}"   # gradual pruning over this many epochs of the student's data (see prune below)
: "${LATENCY_SENTENCES:=300}"    # batch-1 speed rows decode the first N test sentences (all for batched rows); 0: none
require_count LATENCY_SENTENCES 0 "the test sentences of the batch-1 speed rows, 0 for none"
: "${SPEED_REPEATS:=3}"          # timed passes per speed row (the median is reported)
: "${SPEED_INTERLEAVE:=1}"       # 1: the passes go round-robin over all models (all loaded at once), 0: model by model
: "${SPEED_ENGINES:=fairseq auto}"  # each model measured with fairseq and with its fastest engine (fairseq_kd.serving)
# the speed stage caps hypotheses at 1.2 x source + 10 tokens: an undertrained model looping to fairseq's
# 200-token limit at batch size 1 would otherwise take most of the stage
: "${SPEED_GEN_ARGS:=--max-len-a 1.2 --max-len-b 10}"
: "${RESULTS_DIR:=$WORK}" "${RESULTS_NAME:=results}"  # report writes RESULTS_DIR/RESULTS_NAME.{md,json,png}
: "${RESULTS_NOTES:=}"           # a markdown file added to the results as their Notes section
: "${TEACHER_GOAL:=}"            # the teacher's beam BLEU target in the results (none when empty)
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

USER_DIR=$ROOT/fairseq_kd
# the fairseq-kd tools import fairseq_kd, then fairseq imports --user-dir $USER_DIR: fairseq refuses a second
# package of that name ("not globally unique"), deep inside a stage, so the installed one must be this checkout's
own_package=$(python3 -c 'import importlib.util as u, os, sys
s = u.find_spec("fairseq_kd")
paths = list(s.submodule_search_locations or []) if s else []
print("ok" if os.path.abspath(sys.argv[1]) in paths else (paths[0] if paths else "nowhere"))' "$USER_DIR") \
  || die "python3 could not look for the fairseq_kd package (see above)"
[ "$own_package" = ok ] || die "python3 imports fairseq_kd from $own_package, not from this checkout's $USER_DIR" \
  "(fairseq would refuse its --user-dir mid-stage): run 'make install' in $ROOT and use its .venv/"
BIN=$WORK/bin
SEQKD=$WORK/seqkd
TEACHER=$WORK/teacher/checkpoint_best.pt

# SUBWORD: spm        joint sentencepiece model ($VOCAB pieces) trained on train only (untokenized input)
#          word       Moses tokenization (sacremoses), then the $VOCAB most frequent words per language, rest <unk>
#                     (Kim & Rush's WMT setting); hypotheses are Moses-detokenized before sacreBLEU
#          given-bpe  input already tokenized and BPE'd with `@@ ` (fairseq's prepare-iwslt14.sh output): used as is;
#                     hypotheses and references are de-BPE'd and Moses-detokenized before sacreBLEU
: "${SUBWORD:=spm}"
case $SUBWORD in
  spm) POST_PROCESS=(--post-process sentencepiece) DETOK=() JOINED=1 ;;
  word) POST_PROCESS=() DETOK=(--detok moses) JOINED=0 ;;
  given-bpe) POST_PROCESS=(--post-process subword_nmt) DETOK=(--detok moses) JOINED=1 ;;
  *) die "unknown SUBWORD '$SUBWORD' (spm, word or given-bpe)" ;;
esac

prepare() {
  local raw=$WORK/raw s l
  mkdir -p "$raw"
  prepare_raw
  for s in train valid test; do
    for l in "$SRC" "$TGT"; do require_file "$raw/$s.$l" "(written by prepare_raw)"; done
    [ "$(wc -l < "$raw/$s.$SRC")" -eq "$(wc -l < "$raw/$s.$TGT")" ] \
      || die "$raw/$s.$SRC and $raw/$s.$TGT have different line counts: the corpus is misaligned"
  done
  for s in valid test; do  # the references sacreBLEU scores against
    if [ "$SUBWORD" = given-bpe ]; then sed -r 's/(@@ )|(@@ ?$)//g' "$raw/$s.$TGT" > "$raw/$s.ref.$TGT"
    else cp "$raw/$s.$TGT" "$raw/$s.ref.$TGT"; fi
  done
  local dict=(--joined-dictionary)
  case $SUBWORD in
    spm)
      fairseq-kd-spm train --input "$raw/train.$SRC" "$raw/train.$TGT" --model-prefix "$WORK/spm" \
        --vocab-size "$VOCAB" --model-type "$SPM_TYPE" --character-coverage "$SPM_COVERAGE" --threads "$THREADS"
      fairseq-kd-spm encode --model "$WORK/spm.model" \
        --inputs "$raw"/{train,valid,test}.{"$SRC","$TGT"} --outputs "$raw"/{train,valid,test}.sub.{"$SRC","$TGT"} ;;
    word)
      for s in train valid test; do for l in "$SRC" "$TGT"; do
        sacremoses -q -l "$l" -j "$THREADS" tokenize < "$raw/$s.$l" > "$raw/$s.sub.$l"
      done; done
      dict=(--nwordssrc "$VOCAB" --nwordstgt "$VOCAB") ;;
    given-bpe)
      for s in train valid test; do for l in "$SRC" "$TGT"; do cp "$raw/$s.$l" "$raw/$s.sub.$l"; done; done ;;
  esac
  rm -rf "$BIN"
  fairseq-preprocess -s "$SRC" -t "$TGT" --trainpref "$raw/train.sub" --validpref "$raw/valid.sub" \
    --testpref "$raw/test.sub" --destdir "$BIN" "${dict[@]}" --workers "$THREADS"
}

# the tracks and students asked for, checked before any stage runs
track_arch() {  # track_arch TRACK: the track's architecture in STUDENT_ARCHS
  local p
  for p in $STUDENT_ARCHS; do
    if [ "${p%%=*}" = "$1" ]; then echo "${p#*=}"; return; fi
  done
  die "unknown student track '$1' (STUDENT_ARCHS: $STUDENT_ARCHS)"
}
OBJECTIVES="nll word_kd seqkd seqkd_seqinter seqkd_word_kd block_kd"
check_students() {
  local p s
  for p in $STUDENT_ARCHS; do
    case $p in *=?*) ;; *) die "STUDENT_ARCHS entry '$p' is not TRACK=ARCH" ;; esac
    [[ ${p%%=*} =~ ^[A-Za-z0-9]+$ ]] || die "student track '${p%%=*}' in STUDENT_ARCHS: a track name is letters and digits"
  done
  for p in $TRACK_HOURS; do
    [[ $p =~ ^[A-Za-z0-9]+=[0-9]*\.?[0-9]+$ ]] || die "TRACK_HOURS entry '$p' is not TRACK=HOURS (e.g. ${STUDENT_ARCHS%%=*}=0.2)"
    track_arch "${p%%=*}" > /dev/null
  done
  for p in $TRACK_UPDATES; do
    [[ $p =~ ^[A-Za-z0-9]+=[0-9]+$ ]] || die "TRACK_UPDATES entry '$p' is not TRACK=UPDATES (e.g. ${STUDENT_ARCHS%%=*}=800)"
    track_arch "${p%%=*}" > /dev/null
  done
  for s in $STUDENTS; do
    case $s in *_*) ;; *) die "student '$s' in STUDENTS is not TRACK_OBJECTIVE (e.g. ${STUDENT_ARCHS%%=*}_$s)" ;; esac
    track_arch "${s%%_*}" > /dev/null
    case " $OBJECTIVES " in *" ${s#*_} "*) ;; *) die "unknown objective '${s#*_}' of student '$s' (objectives: $OBJECTIVES)" ;; esac
  done
  # PRUNE_STUDENT names a student of this run (checked before any stage, so a typo stops the run before the teacher trains)
  if [ "${PRUNE_STUDENT:-auto}" != auto ]; then
    case " $STUDENTS " in *" ${PRUNE_STUDENT#student_} "*) ;; *) die "PRUNE_STUDENT '$PRUNE_STUDENT' is not a student of this run (student_ + one of: $STUDENTS)" ;; esac
  fi
}
track_budget() {  # track_budget TRACK DEFAULT TRACK=N...: the track's N, else DEFAULT
  local p track=$1 value=$2; shift 2
  for p in "$@"; do [ "${p%%=*}" != "$track" ] || value=${p#*=}; done
  echo "$value"
}
# shellcheck disable=SC2086
track_hours() { track_budget "$1" "$STUDENT_HOURS" $TRACK_HOURS; }  # track_hours TRACK: TRACK_HOURS over STUDENT_HOURS
student_track() { local s=${1#student_}; echo "${s%%_*}"; }  # student_track student_TRACK_OBJECTIVE
student_arch() { track_arch "$(student_track "$1")"; }
student_epochs() {  # student_epochs student_TRACK_OBJECTIVE: its epoch budget (the Seq-Inter fine-tuning has its own)
  case $1 in *_seqkd_seqinter) echo "$SEQ_INTER_EPOCHS" ;; *) echo "$STUDENT_EPOCHS" ;; esac
}
# shellcheck disable=SC2086
student_updates() {  # student_updates student_TRACK_OBJECTIVE: its update budget (none for the Seq-Inter fine-tuning)
  case $1 in *_seqkd_seqinter) echo 0 ;; *) track_budget "$(student_track "$1")" "$STUDENT_UPDATES" $TRACK_UPDATES ;; esac
}
family() { case $1 in kd_lstm*|lstm*) echo LSTM ;; *) echo TRANSFORMER ;; esac; }

# train NAME DATA ARCH EPOCHS HOURS LR ARGS...   (fairseq-train resumes from NAME/checkpoint_last.pt by itself)
# The architecture's family gives the optimizer, batches and default learning rate (LR empty: the family's).
# EPOCH_CHECKPOINTS=N (a caller's local) keeps the last N epoch checkpoints; MAX_UPDATE=N (a caller's local) stops
# after N updates (0: no limit).
train() {
  local name=$1 data=$2 arch=$3 epochs=$4 hours=$5 lr=$6 f; shift 6
  f=$(family "$arch")
  local optim=${f}_OPTIM_ARGS batch=${f}_BATCH_ARGS extra=${f}_ARGS default_lr=${f}_LR
  local share=()
  if [ "$f" = TRANSFORMER ] && [ "$JOINED" = 1 ]; then share=(--share-all-embeddings); fi
  local keep=(--no-epoch-checkpoints)
  if [ "${EPOCH_CHECKPOINTS:-0}" -gt 0 ]; then keep=(--keep-last-epochs "$EPOCH_CHECKPOINTS"); fi
  # STAGE= clears stamps, not checkpoints: say so, or a redo with other settings silently keeps the old model
  if [ -f "$WORK/$name/checkpoint_last.pt" ]; then
    log "$name: resuming from $WORK/$name/checkpoint_last.pt (rm -r $WORK/$name to train it again with new settings)"
  fi
  # shellcheck disable=SC2086
  $TRAIN_CMD "$data" --user-dir "$USER_DIR" --arch "$arch" --save-dir "$WORK/$name" --lr "${lr:-${!default_lr}}" \
    ${!optim} ${!batch} ${!extra} "${share[@]}" --max-epoch "$epochs" --stop-time-hours "$hours" --max-update "${MAX_UPDATE:-0}" "${keep[@]}" \
    --no-progress-bar --log-interval 100 --seed 1 $TRAIN_EXTRA "$@"
}

model_path() {  # the checkpoint a trained model is used from
  if [ "$1" = teacher ]; then echo "$TEACHER"; else echo "$WORK/$1/checkpoint_best.pt"; fi
}

# greedy BLEU on valid, logged and kept for choosing the student to prune (pruned models are measured by the speed
# stage)
# shellcheck disable=SC2086
valid_bleu() {  # valid_bleu NAME [CHECKPOINT]
  mkdir -p "$WORK/eval"
  fairseq-kd-speed "$BIN" --user-dir "$USER_DIR" --path "${2:-$(model_path "$1")}" --name "$1" \
    --gen-subset valid --beam 1 --batch-size 64 --repeats 1 --warmup 0 --threads "$THREADS" --ref "$WORK/raw/valid.ref.$TGT" "${POST_PROCESS[@]}" "${DETOK[@]}" \
    --engine "$EVAL_ENGINE" --output "$WORK/eval/$1.valid.json" $GEN_ARGS
}

NLL=(--criterion label_smoothed_cross_entropy --label-smoothing "$LABEL_SMOOTHING")
STOPPING=(--patience "$PATIENCE")
# word_kd_objective DATA [CACHE]: prints the word_kd options, one a line, against the teacher's top-k cache over
# DATA (or the online teacher with WORD_KD_TEACHER=online), or against CACHE when given
word_kd_objective() {
  local teacher=(--teacher-topk-path "$WORK/topk_seqkd")
  if [ "$1" = "$BIN" ]; then teacher=(--teacher-topk-path "$WORK/topk"); fi
  if [ "$WORD_KD_TEACHER" = online ]; then teacher=(--teacher-path "$TEACHER"); fi
  if [ -n "${2:-}" ]; then teacher=(--teacher-topk-path "$2"); fi
  printf '%s\n' --criterion word_kd "${teacher[@]}" --kd-alpha "$KD_ALPHA" --kd-temperature "$KD_TEMPERATURE" \
    --label-smoothing "$LABEL_SMOOTHING"
}

# the teacher; TEACHER_AVERAGE=N: its last N epochs (fewer if it stopped earlier) averaged (fairseq-kd-average), and
# whichever of the average and checkpoint_best.pt has the higher greedy valid BLEU becomes checkpoint_teacher.pt, the
# teacher every later stage uses (eval/teacher_best.valid.json, eval/teacher_averaged.valid.json)
if [ "$TEACHER_AVERAGE" -gt 0 ]; then TEACHER=$WORK/teacher/checkpoint_teacher.pt; fi
teacher() {
  local EPOCH_CHECKPOINTS=$TEACHER_AVERAGE MAX_UPDATE=$TEACHER_UPDATES
  train teacher "$BIN" "$TEACHER_ARCH" "$TEACHER_EPOCHS" "$TEACHER_HOURS" "" "${NLL[@]}" "${STOPPING[@]}"
  if [ "$TEACHER_AVERAGE" -gt 0 ]; then
    local t=$WORK/teacher n choice
    # the epoch checkpoints, and checkpoint_last.pt when training stopped inside an epoch (TEACHER_HOURS): its
    # final weights are there only
    n=$(fairseq-kd-average "$t" --count)
    [ "$n" -le "$TEACHER_AVERAGE" ] || n=$TEACHER_AVERAGE
    valid_bleu teacher_best "$t/checkpoint_best.pt"
    choice=best
    if [ "$n" -ge 2 ]; then
      fairseq-kd-average "$t" --last "$n" --output "$t/checkpoint_averaged.pt" --force
      valid_bleu teacher_averaged "$t/checkpoint_averaged.pt"
      choice=$(python3 -c 'import json, sys; b, a = (json.load(open(p))["results"][0]["bleu"] for p in sys.argv[1:])
print("averaged" if a > b else "best")' "$WORK/eval/teacher_best.valid.json" "$WORK/eval/teacher_averaged.valid.json")
    fi
    cp "$t/checkpoint_$choice.pt" "$TEACHER.tmp" && mv "$TEACHER.tmp" "$TEACHER"  # a copy: fairseq rewrites its own files in place
    log "teacher: checkpoint_$choice.pt, the higher greedy valid BLEU (eval/teacher_best.valid.json, eval/teacher_averaged.valid.json)"
    cp "$WORK/eval/teacher_$choice.valid.json" "$WORK/eval/teacher.valid.json"  # that checkpoint's, not decoded again
    return
  fi
  valid_bleu teacher
}

# Caches of teacher outputs record the checkpoints that made them (fairseq-kd-check-cache). A stage that is run
# again rebuilds a cache whose teacher changed (its chunks would mix two teachers); a stamped stage whose cache is
# stale stops the recipe (ALLOW_STALE_CACHE=1 uses it anyway).
stage_cache() {
  case $1 in topk) echo "$WORK/topk" ;; topk_seqkd) echo "$WORK/topk_seqkd" ;; seqkd_data) echo "$SEQKD" ;; esac
}
check_stage_outputs() {
  local cache
  cache=$(stage_cache "$1")
  [ -n "$cache" ] && [ -e "$cache" ] || return 0
  fairseq-kd-check-cache "$cache" ${ALLOW_STALE_CACHE:+--allow-stale-cache} > /dev/null \
    || die "stage $1 is stamped done, but its cache $cache is stale (see above): redo it with STAGE=$1"
}
remove_if_stale() {
  if [ -s "$1/meta.json" ] || [ -s "$1/provenance.json" ]; then
    if ! fairseq-kd-check-cache "$1" > /dev/null 2>&1; then log "$1 is stale (its teacher changed): rebuilding it"; rm -r "$1"; fi
  fi
  return 0
}

dump_topk() {  # dump_topk DATA DEST [MODEL]: MODEL's (default: the teacher's) top-k cache over DATA's train
  fairseq-kd-dump-topk "$1" --user-dir "$USER_DIR" --path "${3:-$TEACHER}" --gen-subset train --topk "$TOPK" \
    --destdir "$2" --max-tokens "$GEN_MAX_TOKENS" --threads "$THREADS"
}
topk() { remove_if_stale "$WORK/topk"; dump_topk "$BIN" "$WORK/topk"; }

# shellcheck disable=SC2086
seqkd_data() {
  remove_if_stale "$SEQKD"
  local nbest=$NBEST
  [ "$nbest" -le "$DISTILL_BEAM" ] || nbest=$DISTILL_BEAM
  fairseq-kd-distill "$BIN" --user-dir "$USER_DIR" --path "$TEACHER" --gen-subset train --beam "$DISTILL_BEAM" \
    --nbest "$nbest" --select-closest "${POST_PROCESS[@]}" --max-tokens "$GEN_MAX_TOKENS" \
    --threads "$THREADS" --engine "$DISTILL_ENGINE" --destdir "$SEQKD" $GEN_ARGS
}
topk_seqkd() { remove_if_stale "$WORK/topk_seqkd"; dump_topk "$SEQKD/bin" "$WORK/topk_seqkd"; }

# student TRACK_OBJECTIVE: the stage of one STUDENTS entry (model student_TRACK_OBJECTIVE), then its greedy valid BLEU
# shellcheck disable=SC2086
student() {
  local name=student_$1 track=${1%%_*} objective=${1#*_} arch objective_args
  arch=$(track_arch "$track")
  local hours MAX_UPDATE; hours=$(track_hours "$track") MAX_UPDATE=$(student_updates "$name")
  local budget=("$(student_epochs "$name")" "$hours" "")
  case $objective in
    nll) train "$name" "$BIN" "$arch" "${budget[@]}" "${NLL[@]}" "${STOPPING[@]}" ;;
    seqkd) train "$name" "$SEQKD/bin" "$arch" "${budget[@]}" "${NLL[@]}" "${STOPPING[@]}" ;;
    word_kd|seqkd_word_kd)
      local data=$BIN
      if [ "$objective" = seqkd_word_kd ]; then data=$SEQKD/bin; fi
      mapfile -t objective_args < <(word_kd_objective "$data")
      train "$name" "$data" "$arch" "${budget[@]}" "${objective_args[@]}" "${STOPPING[@]}" ;;
    # Kim & Rush: Seq-Inter as fine-tuning of the Seq-KD student, on the gold data plus the selected hypotheses
    seqkd_seqinter)
      train "$name" "$BIN" "$arch" "${budget[0]}" "$hours" "$SEQ_INTER_LR" \
        --task translation_seq_inter --selected-targets "$SEQKD/bin/train.selected.$SRC-$TGT.$TGT" \
        --criterion seq_inter --kd-alpha "$SEQ_INTER_ALPHA" --label-smoothing "$LABEL_SMOOTHING" \
        --finetune-from-model "$WORK/student_${track}_seqkd/checkpoint_best.pt" ;;
    block_kd)
      train "$name" "$BIN" "$arch" "${budget[@]}" --criterion block_kd --teacher-path "$TEACHER" \
        --kd-alpha "$KD_ALPHA" --kd-temperature "$KD_TEMPERATURE" --label-smoothing "$LABEL_SMOOTHING" \
        $BLOCK_KD_ARGS "${STOPPING[@]}" ;;
  esac
  valid_bleu "$name"
}

# the data a student was trained on: the distilled corpus for the Seq-KD family, except the Seq-Inter student
# (fine-tuned on the gold data plus its selected hypotheses)
student_data() {
  case $1 in student_*_seqkd_seqinter) echo "$BIN" ;; student_*_seqkd*) echo "$SEQKD/bin" ;; *) echo "$BIN" ;; esac
}

best_student() {  # the student pruned and compressed: PRUNE_STUDENT, else the best greedy valid BLEU
  if [ "$PRUNE_STUDENT" != auto ]; then echo "student_${PRUNE_STUDENT#student_}"; return; fi
  python3 - "$ROOT/recipes" "$WORK" $STUDENTS <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
from report import valid_bleu  # the eval stage's files, as the report reads them
found = valid_bleu(sys.argv[2])
scores = {f"student_{s}": found[f"student_{s}"] for s in sys.argv[3:] if f"student_{s}" in found}
print(max(scores, key=scores.get))
EOF
}

# Each ratio (0.0: the same retraining without pruning, the fair "unpruned" row) is pruned (one-shot at the first
# update, or gradually with PRUNE_ARGS) and retrained with PRUNE_OBJECTIVE, with the student's architecture and its
# family's training settings. "own": the Seq-Inter student with seq_inter on the gold data plus its selected
# hypotheses, the others with NLL on their targets (the distilled ones for the Seq-KD family, as in the paper).
# "word_kd": word-level KD from the teacher on those targets (the gold ones for the Seq-Inter student), the dense
# teacher guiding the pruned student back. "self_kd": the same against the unpruned student's own top-k cache, so
# the pruned model learns to translate like the model it replaces.
# shellcheck disable=SC2086
prune() {
  local best r data objective arch
  best=$(best_student)  # a student of this run: check_students refused any other PRUNE_STUDENT
  arch=$(student_arch "$best")
  log "pruning $best (best greedy valid BLEU among the students), retraining with the $PRUNE_OBJECTIVE objective"
  echo "$best" > "$WORK/pruned_student.txt"
  data=$(student_data "$best")
  case $PRUNE_OBJECTIVE:$best in
    own:student_*_seqkd_seqinter) objective=(--selected-targets "$SEQKD/bin/train.selected.$SRC-$TGT.$TGT"
                                --criterion seq_inter --kd-alpha "$SEQ_INTER_ALPHA" --label-smoothing "$LABEL_SMOOTHING") ;;
    own:*) objective=("${NLL[@]}") ;;
    word_kd:*) mapfile -t objective < <(word_kd_objective "$data") ;;
    self_kd:*)
      local cache=$WORK/topk_self_$best
      remove_if_stale "$cache"  # the student was retrained since its cache was written
      [ -s "$cache/meta.json" ] || dump_topk "$data" "$cache" "$WORK/$best/checkpoint_best.pt"
      mapfile -t objective < <(word_kd_objective "$data" "$cache") ;;
  esac
  # PRUNE_SCHEDULE_EPOCHS=E: the cubic schedule over E epochs of the student's data, counted in its own updates
  # (read from its training log: a transformer's 4k-token batches make fewer updates than an LSTM's 2k ones), the
  # first validation after it
  local schedule=()
  if [ -n "$PRUNE_SCHEDULE_EPOCHS" ]; then
    local per_epoch steps
    per_epoch=$(grep -o '| train | epoch 001 |.*| num_updates [0-9]*' "$WORK/logs/$best.log" | tail -1 | grep -o '[0-9]*$' || true)
    [ -n "$per_epoch" ] || die "no epoch 1 of $best in $WORK/logs/$best.log to count its updates per epoch (give --prune-steps in PRUNE_ARGS instead of PRUNE_SCHEDULE_EPOCHS)"
    steps=$((PRUNE_SCHEDULE_EPOCHS * per_epoch))
    log "gradual pruning over $PRUNE_SCHEDULE_EPOCHS epoch(s) of $best's data: $steps updates ($per_epoch per epoch)"
    schedule=(--prune-schedule gradual --prune-steps "$steps" --validate-after-updates "$steps")
  fi
  for r in $PRUNE_RATIOS; do
    # translation_prune logs the sparsity table
    train "pruned_$r" "$data" "$arch" "$PRUNE_EPOCHS" 0 "$PRUNE_LR" "${objective[@]}" \
      --task translation_prune --prune-ratio "$r" --prune-scheme class-blind \
      --finetune-from-model "$WORK/$best/checkpoint_best.pt" "${schedule[@]}" $PRUNE_ARGS
  done
}

trained_models() {  # every model the pipeline trained, in table order
  local m
  for m in teacher $(for s in $STUDENTS; do echo "student_$s"; done) $(for r in $PRUNE_RATIOS; do echo "pruned_$r"; done); do
    [ -s "$WORK/$m/checkpoint_best.pt" ] && echo "$m"
  done
  return 0
}

# models/NAME.pt: each model without its optimizer state (the dense fp32 file one deploys and compares),
# and the compressed models (compressed_models): the PRUNE_COMPRESS_RATIO pruned model as sparse and as sparse+int8
# (with pruning), and the best student (the one pruned, else the best greedy valid BLEU) in int8 for its fastest
# engine (models/<student>_int8: a CTranslate2 export of a transformer, a fairseq-kd-compress file of a kd_lstm)
compressed_models() {  # NAME PATH, a line each
  local c=$PRUNE_COMPRESS_RATIO best
  if [ -n "$PRUNE_RATIOS" ]; then
    echo "pruned_${c}_sparse $WORK/models/pruned_${c}_sparse.pt"
    echo "pruned_${c}_sparse_int8 $WORK/models/pruned_${c}_sparse_int8.pt"
  fi
  best=$(cat "$WORK/best_student.txt")
  echo "${best}_int8 $(int8_model_path "$best")"
}
int8_model_path() {  # int8_model_path STUDENT: its int8 form for its fastest engine (a kd_lstm file, a CTranslate2 directory)
  case $(family "$(student_arch "$1")") in
    LSTM) echo "$WORK/models/${1}_int8.pt" ;;
    *) echo "$WORK/models/${1}_int8" ;;
  esac
}
compress() {
  local m c=$PRUNE_COMPRESS_RATIO best
  local ckpts=()
  for m in $(trained_models); do ckpts+=("$(model_path "$m")"); done
  fairseq-kd-compress "${ckpts[@]}" --strip --output "$WORK/models"
  if [ -n "$PRUNE_RATIOS" ]; then
    require_file "$WORK/pruned_$c/checkpoint_best.pt" "(PRUNE_COMPRESS_RATIO must be one of PRUNE_RATIOS)"
    fairseq-kd-compress "$WORK/pruned_$c/checkpoint_best.pt" --sparse --output "$WORK/models/pruned_${c}_sparse.pt"
    fairseq-kd-compress "$WORK/pruned_$c/checkpoint_best.pt" --sparse --int8 --output "$WORK/models/pruned_${c}_sparse_int8.pt"
    best=$(cat "$WORK/pruned_student.txt")
  else
    best=$(best_student)
  fi
  echo "$best" > "$WORK/best_student.txt"
  log "$best (${PRUNE_RATIOS:+the student pruned, }best greedy valid BLEU among the students) in int8 for its fastest engine"
  local path
  path=$(int8_model_path "$best")
  case $path in
    *.pt) fairseq-kd-compress "$(model_path "$best")" --int8 --output "$path" ;;
    *) fairseq-kd-export "$(model_path "$best")" --data "$BIN" --format ctranslate2 --quantization int8 \
         --output "$path" --force ;;
  esac
}

# every model batched (all of test, with BLEU); at batch 1 (LATENCY_SENTENCES) the models of the speed targets only:
# the teacher, the students and the best student's int8 form (the pruned models have their student's shape)
speed() {
  local models=() latency=() m path
  while read -r m path; do
    [ -s "$path" ] || [ -d "$path" ] || die "missing input: $path (written by the compress stage)"
    models+=(--path "$path" --name "$m")
    [[ $m == pruned_* ]] || latency+=(--path "$path" --name "$m")
  done < <(for m in $(trained_models); do echo "$m $WORK/models/$m.pt"; done; compressed_models)
  local common=("$BIN" --user-dir "$USER_DIR" --gen-subset test --threads "$THREADS" --beam 1 "$BEAM"
                --ref "$WORK/raw/test.ref.$TGT" "${POST_PROCESS[@]}" "${DETOK[@]}" --hyp-dir "$WORK/hyps")
  # shellcheck disable=SC2206
  common+=($GEN_ARGS $SPEED_GEN_ARGS)
  [ "$SPEED_INTERLEAVE" = 1 ] && common+=(--interleave)
  # shellcheck disable=SC2206
  common+=(--engine $SPEED_ENGINES)
  fairseq-kd-speed "${common[@]}" "${models[@]}" --batch-size 64 --repeats "$SPEED_REPEATS" --warmup 1 \
    --output "$WORK/speed_batched.json"
  rm -f "$WORK/speed_batch1.json"  # a rerun with LATENCY_SENTENCES=0 does not report an older run's rows
  [ "$LATENCY_SENTENCES" -gt 0 ] || { log "LATENCY_SENTENCES=0: no batch-1 rows"; return 0; }
  fairseq-kd-speed "${common[@]}" "${latency[@]}" --batch-size 1 --max-sentences "$LATENCY_SENTENCES" \
    --repeats "$SPEED_REPEATS" --warmup 5 --output "$WORK/speed_batch1.json"
}

report() {
  local compressed=(--best-student "$(cat "$WORK/best_student.txt")")
  if [ -n "$PRUNE_RATIOS" ]; then
    # shellcheck disable=SC2206
    compressed+=(--pruned-student "$(cat "$WORK/pruned_student.txt")" --prune-ratios $PRUNE_RATIOS --compress-ratio "$PRUNE_COMPRESS_RATIO")
  fi
  mkdir -p "$RESULTS_DIR"
  fairseq-kd-table "$WORK/speed_batched.json" --reference teacher --output-md "$WORK/table_batched.md" \
    --output-png "$RESULTS_DIR/$RESULTS_NAME.png"
  rm -f "$WORK/table_batch1.md"
  if [ -f "$WORK/speed_batch1.json" ]; then
    fairseq-kd-table "$WORK/speed_batch1.json" --reference teacher --output-md "$WORK/table_batch1.md"
  fi
  python3 "$ROOT/recipes/report.py" --work "$WORK" --title "$RECIPE_TITLE" --command "$RECIPE_COMMAND" \
    "${compressed[@]}" --tracks $(for p in $STUDENT_ARCHS; do echo "${p%%=*}"; done) \
    ${TEACHER_GOAL:+--teacher-goal "$TEACHER_GOAL"} --output-md "$RESULTS_DIR/$RESULTS_NAME.md" --output-json "$RESULTS_DIR/$RESULTS_NAME.json" \
    ${RESULTS_NOTES:+--notes "$RESULTS_NOTES"}
}

pipeline_stages() {
  local s
  echo prepare teacher
  # the teacher's outputs the students read, all before the first student (so students can train side by side)
  for s in $STUDENTS; do
    case ${s#*_} in
      word_kd) [ "$WORD_KD_TEACHER" = online ] || echo topk ;;
      seqkd|seqkd_seqinter) echo seqkd_data ;;
      seqkd_word_kd) echo seqkd_data; [ "$WORD_KD_TEACHER" = online ] || echo topk_seqkd ;;
    esac
  done
  for s in $STUDENTS; do
    case ${s#*_} in seqkd_seqinter) echo "student_${s%%_*}_seqkd" ;; esac  # the student it fine-tunes, first
    echo "student_$s"
  done
  # PRUNE_OBJECTIVE=word_kd reads the teacher's cache over the pruned student's data; the student is chosen
  # only in the prune stage, so both caches its candidates may need
  if [ "$PRUNE_OBJECTIVE" = word_kd ] && [ "$WORD_KD_TEACHER" != online ]; then
    echo topk
    case " $STUDENTS " in *_seqkd" "*|*_seqkd_word_kd" "*) echo topk_seqkd ;; esac
  fi
  [ -z "$PRUNE_RATIOS" ] || echo prune
  echo compress speed report
}

# student_batches STAGE...: the student stages in the batches that train side by side, one batch a line: at most
# STUDENT_JOBS each, in order, and a Seq-Inter student never in the batch of the Seq-KD student it fine-tunes
student_batches() {
  local batch=() s
  for s in "$@"; do
    if [ ${#batch[@]} -ge "$STUDENT_JOBS" ] || [[ $s == *_seqkd_seqinter && " ${batch[*]} " == *" ${s%_seqinter} "* ]]; then
      echo "${batch[*]}"; batch=()
    fi
    batch+=("$s")
  done
  [ ${#batch[@]} -eq 0 ] || echo "${batch[*]}"
}
student_threads() { local t=$(( THREADS / $1 )); echo $(( t > 0 ? t : 1 )); }  # student_threads BATCH_SIZE

kill_tree() {  # kill_tree PID: SIGTERM to PID and every process under it, the deepest first
  local child
  for child in $(pgrep -P "$1" || true); do kill_tree "$child"; done
  kill -TERM "$1" 2> /dev/null || true
}

# run_students STAGE...: batch by batch; a batch of several runs side by side, each student with its share of
# THREADS; a failed student stops the recipe once its batch has finished (the others keep their stamps). The
# students run in the background, where bash makes them ignore SIGINT: an interrupt (Ctrl-C) or SIGTERM of the
# recipe stops them here, so none trains on unseen (a rerun resumes each from its checkpoint_last.pt).
run_students() {
  local line batch s pids failed threads
  while read -r line; do
    read -ra batch <<< "$line"
    if [ ${#batch[@]} -eq 1 ]; then run_stage "${batch[0]}" student "${batch[0]#student_}"; continue; fi
    threads=$(student_threads ${#batch[@]})
    log "side by side (STUDENT_JOBS=$STUDENT_JOBS), $threads thread(s) each: ${batch[*]}"
    pids=()
    # the trap before the first student starts: an interrupt arriving between the forks and a later trap would end
    # the recipe by default while the students (SIGINT ignored in the background) train on and hold its stderr
    # (a background subshell does not inherit the trap: bash resets trapped signals there)
    trap 'for s in "${pids[@]}"; do kill_tree "$s"; done; wait
          die "interrupted: stopped ${batch[*]} (rerun to resume them from their checkpoints)"' INT TERM
    for s in "${batch[@]}"; do
      ( export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
        THREADS=$threads STAGE_PREFIX="[$s] "
        run_stage "$s" student "${s#student_}" ) &
      pids+=("$!")
    done
    failed=0
    for s in "${pids[@]}"; do wait "$s" || failed=$((failed + 1)); done
    trap - INT TERM
    [ "$failed" -eq 0 ] || exit 1  # each failed stage said why, in its own line
  done < <(student_batches "$@")
}

run_pipeline() {
  local stages=() todo=() s seen=" " started=0 i batch
  check_students
  for s in $(pipeline_stages); do
    case $seen in *" $s "*) continue ;; esac
    seen="$seen$s "; stages+=("$s")
  done
  if [ -n "${STAGE:-}" ]; then
    case $seen in *" $STAGE "*) ;; *) die "unknown STAGE '$STAGE' (stages: ${stages[*]})" ;; esac
  fi
  [ -z "${STOP_AFTER:-}" ] || case $seen in *" $STOP_AFTER "*) ;; *) die "unknown STOP_AFTER '$STOP_AFTER' (stages: ${stages[*]})" ;; esac
  if [ "${DRY_RUN:-0}" = 1 ]; then  # the checks above passed: say what would run, touch nothing
    log "DRY_RUN=1: the checks passed; stages: ${stages[*]}"
    log "  teacher: $TEACHER_ARCH, at most $TEACHER_EPOCHS epochs, $TEACHER_UPDATES updates and $TEACHER_HOURS h (0: no limit)"
    local trained=()
    for s in "${stages[@]}"; do [[ $s != student_* ]] || trained+=("$s"); done
    for s in "${trained[@]}"; do
      log "  $s: $(student_arch "$s"), at most $(student_epochs "$s") epochs, $(student_updates "$s") updates and" \
        "$(track_hours "$(student_track "$s")") h (0: no limit)"
    done
    if [ "$STUDENT_JOBS" -gt 1 ]; then
      i=0
      while read -r s; do
        read -ra batch <<< "$s"
        i=$((i + 1))
        log "  student batch $i (STUDENT_JOBS=$STUDENT_JOBS), $(student_threads ${#batch[@]}) thread(s) each: $s"
      done < <(student_batches "${trained[@]}")
    fi
    return 0
  fi
  # the stages to run: from STAGE (its stamp and the later ones cleared) to STOP_AFTER
  for s in "${stages[@]}"; do
    if [ -n "${STAGE:-}" ] && [ "$s" = "$STAGE" ]; then started=1; fi
    if [ -z "${STAGE:-}" ] || [ "$started" = 1 ]; then todo+=("$s"); fi
    if [ "${STOP_AFTER:-}" = "$s" ]; then break; fi
  done
  mkdir -p "$WORK"
  if [ -n "${STAGE:-}" ]; then for s in "${todo[@]}"; do rm -f "$WORK/.done/$s"; done; fi
  for ((i = 0; i < ${#todo[@]}; i++)); do
    s=${todo[i]}
    if [[ $s == student_* ]]; then  # the run of consecutive students, batched (STUDENT_JOBS)
      local group=()
      while [ "$i" -lt ${#todo[@]} ] && [[ ${todo[i]} == student_* ]]; do group+=("${todo[i]}"); i=$((i + 1)); done
      i=$((i - 1))
      run_students "${group[@]}"
    else
      run_stage "$s" "$s"
    fi
  done
  if [ -n "${STOP_AFTER:-}" ]; then log "stopping after stage $STOP_AFTER (STOP_AFTER)"; return 0; fi
  log "all stages done; results: $RESULTS_DIR/$RESULTS_NAME.md"
}
