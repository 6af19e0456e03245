# The distillation pipeline shared by the recipes (sourced, not run). A recipe sets its defaults, defines
# `prepare_raw` (writes untokenized, aligned $WORK/raw/{train,valid,test}.{$SRC,$TGT}), sources this file and
# calls `run_pipeline`. Stages, in order (each skipped once stamped in $WORK/.done, see recipes/lib.sh):
#
#   prepare          prepare_raw; joint sentencepiece model trained on train only; fairseq-preprocess
#   teacher          teacher, label-smoothed NLL
#   student_nll      baseline student, same data, NLL
#   topk             teacher top-k cache over train (fairseq-kd-dump-topk) for the offline word_kd students
#   student_word_kd  Word-KD student (word_kd against the cache; WORD_KD_TEACHER=online runs the teacher instead)
#   seqkd_data       teacher beam $BEAM over train: distilled corpus, $NBEST-best, Seq-Inter selection
#   student_seqkd    Seq-KD student: NLL on the distilled corpus
#   student_seqkd_seqinter  Seq-KD student fine-tuned with seq_inter (gold + closest K-best hypothesis)
#   topk_seqkd       teacher top-k cache over the distilled corpus
#   student_seqkd_word_kd   Seq-KD + Word-KD student (word_kd on the distilled corpus)
#   student_block_kd block_kd student (online teacher)
#   prune            best student by greedy valid BLEU, pruned class-blind to $PRUNE_RATIOS and retrained
#                    with $PRUNE_OBJECTIVE (0.0: retrained unpruned, the reference of the pruning targets)
#   compress         every model without optimizer state (models/, the dense fp32 files), and the
#                    $PRUNE_COMPRESS_RATIO pruned model as sparse and as sparse+int8
#   speed            every model: greedy and beam $BEAM, batched (all of test, with BLEU; hypotheses in $WORK/hyps)
#                    and batch 1
#   report           table (markdown), Pareto plot (PNG), results JSON and $WORK/results.md with the targets
#
# STAGE=name starts at that stage (clearing its stamp and the later ones); STOP_AFTER=name ends after it.
# Stamps only: a model already trained resumes from $WORK/<model>/checkpoint_last.pt (the log says so), so to
# retrain one with other settings remove its directory (e.g. rm -r $WORK/pruned_* before STAGE=prune).
# Every size, epoch count, learning rate and thread count is an environment variable (see the defaults below).
# Training runs `$TRAIN_CMD` (default fairseq-train): on GPUs fairseq-train uses every visible device by itself;
# for several nodes set TRAIN_CMD to fairseq's torchrun form and TRAIN_EXTRA to fairseq's distributed options.

: "${THREADS:=2}"
: "${VOCAB:=8000}" "${SPM_TYPE:=unigram}" "${SPM_COVERAGE:=1.0}"
: "${TEACHER_ARCH:=kd_lstm_2x500}" "${STUDENT_ARCH:=kd_lstm_2x100}"
: "${TEACHER_EPOCHS:=10}" "${STUDENT_EPOCHS:=10}"
: "${TEACHER_LR:=0.002}" "${STUDENT_LR:=0.002}"
: "${OPTIM_ARGS:=--optimizer adam --lr-scheduler reduce_lr_on_plateau --lr-shrink 0.5 --clip-norm 5}"
: "${BATCH_ARGS:=--max-tokens 2000}" "${TRAIN_EXTRA:=}" "${TRAIN_CMD:=fairseq-train}"
: "${LABEL_SMOOTHING:=0.1}"
: "${KD_ALPHA:=0.5}" "${KD_TEMPERATURE:=1}" "${TOPK:=8}" "${WORD_KD_TEACHER:=topk}"
: "${BLOCK_KD_ARGS:=--block-mode word --block-score teacher-gold --block-weighting confidence --block-threshold 0.1}"
: "${BEAM:=5}" "${NBEST:=5}" "${GEN_MAX_TOKENS:=6000}" "${GEN_ARGS:=}"  # GEN_ARGS: fairseq generation options for every decoding
: "${SEQ_INTER_ALPHA:=0.5}" "${SEQ_INTER_EPOCHS:=2}" "${SEQ_INTER_LR:=0.0005}"
: "${STUDENTS:=nll word_kd seqkd seqkd_seqinter seqkd_word_kd block_kd}"
: "${PRUNE_STUDENT:=auto}" "${PRUNE_RATIOS:=0.0 0.5 0.8 0.9}" "${PRUNE_EPOCHS:=2}"
# retraining restarts at the student's own learning rate ("learning-rate rewinding", Renda et al. 2020): on
# multi30k it recovered 90 % pruning to within 0.6 BLEU of the control, against 1.7 at a quarter of the rate
: "${PRUNE_LR:=$STUDENT_LR}"
: "${PRUNE_COMPRESS_RATIO:=0.8}"
# PRUNE_OBJECTIVE: own      the student's own objective (seq_inter for the Seq-Inter student, NLL on its targets else)
#                  word_kd  word_kd against the teacher's top-k cache ($TOPK) over the student's targets
#                  self_kd  word_kd against the unpruned student's own top-k cache over its targets: the pruned
#                           model is pulled towards the dense model it replaces (the cache, $WORK/topk_self_<student>,
#                           is written once in the prune stage; remove it if that student is retrained)
: "${PRUNE_OBJECTIVE:=own}"
case $PRUNE_OBJECTIVE in own|word_kd|self_kd) ;; *) die "unknown PRUNE_OBJECTIVE '$PRUNE_OBJECTIVE' (own, word_kd or self_kd)" ;; esac
: "${PRUNE_ARGS:=}"              # more translation_prune options, e.g. --prune-schedule gradual --prune-steps 200
: "${LATENCY_SENTENCES:=300}"    # batch-1 speed rows decode the first N test sentences (all for batched rows)
: "${SPEED_REPEATS:=3}"          # timed passes per speed row (the median is reported)
: "${SPEED_INTERLEAVE:=1}"       # 1: the passes go round-robin over all models (all loaded at once), 0: model by model
: "${SPEED_ENGINES:=fairseq auto}"  # each model measured with fairseq and with its fastest engine (fairseq_kd.serving)
# the speed stage caps hypotheses at 1.2 x source + 10 tokens: an undertrained model looping to fairseq's
# 200-token limit at batch size 1 would otherwise take most of the stage
: "${SPEED_GEN_ARGS:=--max-len-a 1.2 --max-len-b 10}"
: "${RESULTS_DIR:=$WORK}" "${RESULTS_NAME:=results}"  # report writes RESULTS_DIR/RESULTS_NAME.{md,json,png}
: "${RESULTS_NOTES:=}"           # a markdown file added to the results as their Notes section
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

USER_DIR=$ROOT/fairseq_kd
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
  spm) POST_PROCESS=(--post-process sentencepiece) DETOK=() ;;
  word) POST_PROCESS=() DETOK=(--detok moses) ;;
  given-bpe) POST_PROCESS=(--post-process subword_nmt) DETOK=(--detok moses) ;;
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

# train NAME DATA ARCH EPOCHS LR ARGS...   (fairseq-train resumes from NAME/checkpoint_last.pt by itself)
# then the greedy valid BLEU of the teacher and the students (pruned models are measured by the speed stage)
train() {
  local name=$1 data=$2 arch=$3 epochs=$4 lr=$5; shift 5
  # STAGE= clears stamps, not checkpoints: say so, or a redo with other settings silently keeps the old model
  if [ -f "$WORK/$name/checkpoint_last.pt" ]; then
    log "$name: resuming from $WORK/$name/checkpoint_last.pt (rm -r $WORK/$name to train it again with new settings)"
  fi
  # shellcheck disable=SC2086
  $TRAIN_CMD "$data" --user-dir "$USER_DIR" --arch "$arch" --save-dir "$WORK/$name" --lr "$lr" $OPTIM_ARGS \
    $BATCH_ARGS --max-epoch "$epochs" --no-epoch-checkpoints --no-progress-bar --log-interval 100 --seed 1 \
    $TRAIN_EXTRA "$@"
  case $name in pruned_*) ;; *) valid_bleu "$name" ;; esac
}

# greedy BLEU on valid, logged and kept for choosing the student to prune
# shellcheck disable=SC2086
valid_bleu() {
  mkdir -p "$WORK/eval"
  fairseq-kd-speed "$BIN" --user-dir "$USER_DIR" --path "$WORK/$1/checkpoint_best.pt" --name "$1" \
    --gen-subset valid --beam 1 --batch-size 64 --repeats 1 --warmup 0 --threads "$THREADS" --ref "$WORK/raw/valid.ref.$TGT" "${POST_PROCESS[@]}" "${DETOK[@]}" \
    --output "$WORK/eval/$1.valid.json" $GEN_ARGS
}

NLL=(--criterion label_smoothed_cross_entropy --label-smoothing "$LABEL_SMOOTHING")
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
word_kd() {  # word_kd NAME DATA: a word_kd student against the teacher
  local objective
  mapfile -t objective < <(word_kd_objective "$2")
  train "$1" "$2" "$STUDENT_ARCH" "$STUDENT_EPOCHS" "$STUDENT_LR" "${objective[@]}"
}

teacher() { train teacher "$BIN" "$TEACHER_ARCH" "$TEACHER_EPOCHS" "$TEACHER_LR" "${NLL[@]}"; }
student_nll() { train student_nll "$BIN" "$STUDENT_ARCH" "$STUDENT_EPOCHS" "$STUDENT_LR" "${NLL[@]}"; }

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
student_word_kd() { word_kd student_word_kd "$BIN"; }

# shellcheck disable=SC2086
seqkd_data() {
  remove_if_stale "$SEQKD"
  fairseq-kd-distill "$BIN" --user-dir "$USER_DIR" --path "$TEACHER" --gen-subset train --beam "$BEAM" \
    --nbest "$NBEST" --select-closest "${POST_PROCESS[@]}" --max-tokens "$GEN_MAX_TOKENS" \
    --threads "$THREADS" --destdir "$SEQKD" $GEN_ARGS
}
student_seqkd() { train student_seqkd "$SEQKD/bin" "$STUDENT_ARCH" "$STUDENT_EPOCHS" "$STUDENT_LR" "${NLL[@]}"; }
# Kim & Rush: Seq-Inter as fine-tuning of the Seq-KD student, on the gold data plus the selected hypotheses
student_seqkd_seqinter() {
  train student_seqkd_seqinter "$BIN" "$STUDENT_ARCH" "$SEQ_INTER_EPOCHS" "$SEQ_INTER_LR" \
    --task translation_seq_inter --selected-targets "$SEQKD/bin/train.selected.$SRC-$TGT.$TGT" \
    --criterion seq_inter --kd-alpha "$SEQ_INTER_ALPHA" --label-smoothing "$LABEL_SMOOTHING" \
    --finetune-from-model "$WORK/student_seqkd/checkpoint_best.pt"
}
topk_seqkd() { remove_if_stale "$WORK/topk_seqkd"; dump_topk "$SEQKD/bin" "$WORK/topk_seqkd"; }
student_seqkd_word_kd() { word_kd student_seqkd_word_kd "$SEQKD/bin"; }
# shellcheck disable=SC2086
student_block_kd() {
  train student_block_kd "$BIN" "$STUDENT_ARCH" "$STUDENT_EPOCHS" "$STUDENT_LR" --criterion block_kd \
    --teacher-path "$TEACHER" --kd-alpha "$KD_ALPHA" --kd-temperature "$KD_TEMPERATURE" \
    --label-smoothing "$LABEL_SMOOTHING" $BLOCK_KD_ARGS
}

# the data a student was trained on: the distilled corpus for the Seq-KD family, except the Seq-Inter student
# (fine-tuned on the gold data plus its selected hypotheses)
student_data() {
  case $1 in student_seqkd_seqinter) echo "$BIN" ;; student_seqkd*) echo "$SEQKD/bin" ;; *) echo "$BIN" ;; esac
}

best_student() {
  if [ "$PRUNE_STUDENT" != auto ]; then echo "$PRUNE_STUDENT"; return; fi
  python3 - "$WORK/eval" $STUDENTS <<'EOF'
import json, os, sys
scores = {}
for s in sys.argv[2:]:
    path = os.path.join(sys.argv[1], f"student_{s}.valid.json")
    if os.path.exists(path):
        scores[f"student_{s}"] = json.load(open(path))["results"][0]["bleu"]
print(max(scores, key=scores.get))
EOF
}

# Each ratio (0.0: the same retraining without pruning, the fair "unpruned" row) is pruned (one-shot at the first
# update, or gradually with PRUNE_ARGS) and retrained with PRUNE_OBJECTIVE. "own": the Seq-Inter student with
# seq_inter on the gold data plus its selected hypotheses, the others with NLL on their targets (the distilled ones
# for the Seq-KD family, as in the paper). "word_kd": word-level KD from the teacher on those targets (the gold
# ones for the Seq-Inter student), the dense teacher guiding the pruned student back. "self_kd": the same against
# the unpruned student's own top-k cache, so the pruned model learns to translate like the model it replaces.
# shellcheck disable=SC2086
prune() {
  local best r data objective
  best=$(best_student)
  log "pruning $best (best greedy valid BLEU among the students), retraining with the $PRUNE_OBJECTIVE objective"
  echo "$best" > "$WORK/pruned_student.txt"
  data=$(student_data "$best")
  case $PRUNE_OBJECTIVE:$best in
    own:student_seqkd_seqinter) objective=(--selected-targets "$SEQKD/bin/train.selected.$SRC-$TGT.$TGT"
                                --criterion seq_inter --kd-alpha "$SEQ_INTER_ALPHA" --label-smoothing "$LABEL_SMOOTHING") ;;
    own:*) objective=("${NLL[@]}") ;;
    word_kd:*) mapfile -t objective < <(word_kd_objective "$data") ;;
    self_kd:*)
      local cache=$WORK/topk_self_$best
      remove_if_stale "$cache"  # the student was retrained since its cache was written
      [ -s "$cache/meta.json" ] || dump_topk "$data" "$cache" "$WORK/$best/checkpoint_best.pt"
      mapfile -t objective < <(word_kd_objective "$data" "$cache") ;;
  esac
  for r in $PRUNE_RATIOS; do
    # translation_prune logs the sparsity table
    train "pruned_$r" "$data" "$STUDENT_ARCH" "$PRUNE_EPOCHS" "$PRUNE_LR" "${objective[@]}" \
      --task translation_prune --prune-ratio "$r" --prune-scheme class-blind \
      --finetune-from-model "$WORK/$best/checkpoint_best.pt" $PRUNE_ARGS
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
# and the PRUNE_COMPRESS_RATIO model as sparse and as sparse+int8
compress() {
  local m c=$PRUNE_COMPRESS_RATIO
  require_file "$WORK/pruned_$c/checkpoint_best.pt" "(PRUNE_COMPRESS_RATIO must be one of PRUNE_RATIOS)"
  local ckpts=()
  for m in $(trained_models); do ckpts+=("$WORK/$m/checkpoint_best.pt"); done
  fairseq-kd-compress "${ckpts[@]}" --strip --output "$WORK/models"
  fairseq-kd-compress "$WORK/pruned_$c/checkpoint_best.pt" --sparse --output "$WORK/models/pruned_${c}_sparse.pt"
  fairseq-kd-compress "$WORK/pruned_$c/checkpoint_best.pt" --sparse --int8 --output "$WORK/models/pruned_${c}_sparse_int8.pt"
}

speed() {
  local models=() m c=$PRUNE_COMPRESS_RATIO
  for m in $(trained_models) "pruned_${c}_sparse" "pruned_${c}_sparse_int8"; do
    require_file "$WORK/models/$m.pt" "(written by the compress stage)"
    models+=(--path "$WORK/models/$m.pt" --name "$m")
  done
  local common=("$BIN" --user-dir "$USER_DIR" --gen-subset test --threads "$THREADS" --beam 1 "$BEAM"
                --ref "$WORK/raw/test.ref.$TGT" "${POST_PROCESS[@]}" "${DETOK[@]}" "${models[@]}" --hyp-dir "$WORK/hyps")
  # shellcheck disable=SC2206
  common+=($GEN_ARGS $SPEED_GEN_ARGS)
  [ "$SPEED_INTERLEAVE" = 1 ] && common+=(--interleave)
  # shellcheck disable=SC2206
  common+=(--engine $SPEED_ENGINES)
  fairseq-kd-speed "${common[@]}" --batch-size 64 --repeats "$SPEED_REPEATS" --warmup 1 --output "$WORK/speed_batched.json"
  fairseq-kd-speed "${common[@]}" --batch-size 1 --max-sentences "$LATENCY_SENTENCES" --repeats "$SPEED_REPEATS" --warmup 5 \
    --output "$WORK/speed_batch1.json"
}

report() {
  mkdir -p "$RESULTS_DIR"
  fairseq-kd-table "$WORK/speed_batched.json" --reference teacher --output-md "$WORK/table_batched.md" \
    --output-png "$RESULTS_DIR/$RESULTS_NAME.png"
  fairseq-kd-table "$WORK/speed_batch1.json" --reference teacher --output-md "$WORK/table_batch1.md"
  python3 "$ROOT/recipes/report.py" --work "$WORK" --title "$RECIPE_TITLE" --command "$RECIPE_COMMAND" \
    --pruned-student "$(cat "$WORK/pruned_student.txt")" --prune-ratios $PRUNE_RATIOS \
    --compress-ratio "$PRUNE_COMPRESS_RATIO" --output-md "$RESULTS_DIR/$RESULTS_NAME.md" --output-json "$RESULTS_DIR/$RESULTS_NAME.json" \
    ${RESULTS_NOTES:+--notes "$RESULTS_NOTES"}
}

pipeline_stages() {
  echo prepare teacher
  for s in $STUDENTS; do
    case $s in
      nll|block_kd) echo "student_$s" ;;
      word_kd) [ "$WORD_KD_TEACHER" = online ] || echo topk; echo student_word_kd ;;
      seqkd) echo seqkd_data student_seqkd ;;
      seqkd_seqinter) echo seqkd_data student_seqkd student_seqkd_seqinter ;;
      seqkd_word_kd) echo seqkd_data; [ "$WORD_KD_TEACHER" = online ] || echo topk_seqkd; echo student_seqkd_word_kd ;;
      *) die "unknown student '$s' in STUDENTS (known: nll word_kd seqkd seqkd_seqinter seqkd_word_kd block_kd)" ;;
    esac
  done
  # PRUNE_OBJECTIVE=word_kd reads the teacher's cache over the pruned student's data; the student is chosen
  # only in the prune stage, so both caches its candidates may need
  if [ "$PRUNE_OBJECTIVE" = word_kd ] && [ "$WORD_KD_TEACHER" != online ]; then
    echo topk
    case " $STUDENTS " in *" seqkd "*|*" seqkd_word_kd "*) echo topk_seqkd ;; esac
  fi
  echo prune compress speed report
}

run_pipeline() {
  local stages=() s seen=" " started=0
  for s in $(pipeline_stages); do
    case $seen in *" $s "*) continue ;; esac
    seen="$seen$s "; stages+=("$s")
  done
  if [ -n "${STAGE:-}" ]; then
    case $seen in *" $STAGE "*) ;; *) die "unknown STAGE '$STAGE' (stages: ${stages[*]})" ;; esac
  fi
  [ -z "${STOP_AFTER:-}" ] || case $seen in *" $STOP_AFTER "*) ;; *) die "unknown STOP_AFTER '$STOP_AFTER' (stages: ${stages[*]})" ;; esac
  mkdir -p "$WORK"
  for s in "${stages[@]}"; do
    if [ -n "${STAGE:-}" ] && [ "$s" = "$STAGE" ]; then started=1; fi
    if [ -n "${STAGE:-}" ] && [ "$started" = 1 ]; then rm -f "$WORK/.done/$s"; fi
    if [ -z "${STAGE:-}" ] || [ "$started" = 1 ]; then run_stage "$s" "$s"; fi
    if [ "${STOP_AFTER:-}" = "$s" ]; then log "stopping after stage $s (STOP_AFTER)"; return 0; fi
  done
  log "all stages done; results: $RESULTS_DIR/$RESULTS_NAME.md"
}
