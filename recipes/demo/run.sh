#!/usr/bin/env bash
# Demo (12-15 minutes on 2 CPU cores): on a slice of multi30k En->De, train a small teacher, an NLL
# student and a word_kd student, decode test2016 with fairseq-generate and print sacreBLEU for all three.
# Every knob is an environment variable; rerunning skips finished stages.
#   STUDENTS="nll word_kd block_kd"   also trains a block_kd student (same size and steps)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/recipes/lib.sh"

WORK=${WORK:-$ROOT/demo_work}
DATA=$(multi30k_data)  # DATA unset: the project machines' copy, else fetched into $WORK/data (recipes/lib.sh)
N_TRAIN=${N_TRAIN:-8000}             # training sentences taken from the top of train.*
VOCAB=${VOCAB:-4000}                 # joint sentencepiece vocabulary
TEACHER_ARCH=${TEACHER_ARCH:-kd_lstm_2x256}
STUDENT_ARCH=${STUDENT_ARCH:-kd_lstm_1x128}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-3}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-3}
KD_ALPHA=${KD_ALPHA:-0.5}
KD_TEMPERATURE=${KD_TEMPERATURE:-1}
STUDENTS=${STUDENTS:-nll word_kd}
BLOCK_KD_ARGS=${BLOCK_KD_ARGS:---block-mode word --block-score teacher-gold --block-weighting confidence --block-threshold 0.1}
TEACHER_LR=${TEACHER_LR:-0.003}
STUDENT_LR=${STUDENT_LR:-0.003}
BATCH_ARGS=${BATCH_ARGS:---max-tokens 1000}  # small batches: on CPU the number of updates is what is short
BEAM=${BEAM:-5}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

USER_DIR=$ROOT/fairseq_kd
BIN=$WORK/bin
for f in train.en train.de test2016.en test2016.de val.en val.de; do require_file "$DATA/$f" "(set DATA=)"; done
mkdir -p "$WORK"

prepare() {
  local raw=$WORK/raw
  mkdir -p "$raw"
  for l in en de; do
    head -n "$N_TRAIN" "$DATA/train.$l" > "$raw/train.$l"
    cp "$DATA/val.$l" "$raw/valid.$l"
    cp "$DATA/test2016.$l" "$raw/test.$l"
  done
  fairseq-kd-spm train --input "$raw/train.en" "$raw/train.de" --model-prefix "$WORK/spm" --vocab-size "$VOCAB"
  fairseq-kd-spm encode --model "$WORK/spm.model" \
    --inputs "$raw"/{train,valid,test}.{en,de} --outputs "$raw"/{train,valid,test}.sp.{en,de}
  rm -rf "$BIN"
  fairseq-preprocess -s en -t de --trainpref "$raw/train.sp" --validpref "$raw/valid.sp" --testpref "$raw/test.sp" \
    --destdir "$BIN" --joined-dictionary --workers "$THREADS"
}

# train NAME ARCH EPOCHS LR CRITERION-ARGS...
# shellcheck disable=SC2086
train() {
  local name=$1 arch=$2 epochs=$3 lr=$4; shift 4
  fairseq-train "$BIN" --user-dir "$USER_DIR" --arch "$arch" --save-dir "$WORK/$name" --cpu \
    --optimizer adam --lr "$lr" --clip-norm 5 $BATCH_ARGS --max-epoch "$epochs" \
    --no-epoch-checkpoints --no-progress-bar --log-interval 50 --seed 1 "$@"
}

teacher() { train teacher "$TEACHER_ARCH" "$TEACHER_EPOCHS" "$TEACHER_LR" --criterion label_smoothed_cross_entropy --label-smoothing 0.1; }
KD_ARGS=(--teacher-path "$WORK/teacher/checkpoint_best.pt" --kd-alpha "$KD_ALPHA" --kd-temperature "$KD_TEMPERATURE" --label-smoothing 0.1)
student_nll() { train student_nll "$STUDENT_ARCH" "$STUDENT_EPOCHS" "$STUDENT_LR" --criterion label_smoothed_cross_entropy --label-smoothing 0.1; }
student_word_kd() { train student_word_kd "$STUDENT_ARCH" "$STUDENT_EPOCHS" "$STUDENT_LR" --criterion word_kd "${KD_ARGS[@]}"; }
# shellcheck disable=SC2086
student_block_kd() { train student_block_kd "$STUDENT_ARCH" "$STUDENT_EPOCHS" "$STUDENT_LR" --criterion block_kd "${KD_ARGS[@]}" $BLOCK_KD_ARGS; }

MODELS=(teacher)
for s in $STUDENTS; do MODELS+=("student_$s"); done

evaluate() {
  for name in "${MODELS[@]}"; do
    [ "$WORK/$name.bleu.json" -nt "$WORK/$name/checkpoint_best.pt" ] && continue
    fairseq-generate "$BIN" --user-dir "$USER_DIR" --path "$WORK/$name/checkpoint_best.pt" --gen-subset test \
      --cpu --beam "$BEAM" --batch-size 64 --post-process sentencepiece > "$WORK/$name.test.gen"
    fairseq-kd-score "$WORK/$name.test.gen" --ref "$DATA/test2016.de" --name "$name" --json "$WORK/$name.bleu.json"
  done
}

run_stage prepare prepare
run_stage teacher teacher
for s in $STUDENTS; do
  declare -F "student_$s" > /dev/null || die "unknown student '$s' in STUDENTS (known: nll word_kd block_kd)"
  run_stage "student_$s" "student_$s"
done
rm -f "$WORK/.done/evaluate"  # cheap, and picks up students added to STUDENTS later
run_stage evaluate evaluate

echo
echo "multi30k test2016, beam $BEAM, sacreBLEU on detokenized output ($N_TRAIN training sentences):"
for name in "${MODELS[@]}"; do
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"  {sys.argv[2]:<16} BLEU {r['bleu']:6.2f}   {r['signature']}\")" \
    "$WORK/$name.bleu.json" "$name"
done
echo "stage wall times (s):"; sed 's/^/  /' "$WORK/stage_times.txt"
