#!/usr/bin/env bash
# WMT14 En->De as in Kim & Rush (2016): teacher kd_lstm_4x1000, students kd_lstm_2x500 (STUDENT_ARCHS=lstm=kd_lstm_2x300
# for the smaller one), the whole pipeline of recipes/kd_pipeline.sh. Meant for GPUs; see README.md here.
#   RAW_DIR=/data/wmt14 bash recipes/wmt14_en_de/run.sh
#   SMOKE=1 bash recipes/wmt14_en_de/run.sh     tiny models on a stand-in built from ../shared/data/wmt15-ende-10k
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/recipes/lib.sh"
SRC=en TGT=de

if [ "${SMOKE:-0}" = 1 ]; then
  : "${WORK:=$ROOT/work/wmt14_en_de_smoke}"
  : "${STANDIN:=$ROOT/../shared/data/wmt15-ende-10k}" "${N_TRAIN:=500}" "${N_EVAL:=40}"
  : "${RAW_DIR:=$WORK/standin_raw}" "${TRAIN_CORPORA:=standin-train}" "${DEV_SETS:=standin-dev}" "${TEST_SET:=standin-test}"
  : "${SUBWORD:=word}" "${VOCAB:=400}"
  smoke_defaults
  : "${LSTM_BATCH_ARGS:=--max-tokens 2000}"
  # the stand-in: wmt15-ende-10k is Moses-tokenized with escapes, the recipe expects raw text
  mkdir -p "$RAW_DIR"
  for l in en de; do
    [ -s "$RAW_DIR/standin-test.$l" ] && continue
    require_file "$STANDIN/train.$l" "(set STANDIN= to the wmt15-ende-10k directory)"
    head -n "$N_TRAIN" "$STANDIN/train.$l" | sacremoses -q -l "$l" detokenize > "$RAW_DIR/standin-train.$l"
    head -n "$N_EVAL" "$STANDIN/val.$l" | sacremoses -q -l "$l" detokenize > "$RAW_DIR/standin-dev.$l"
    sed -n "$((N_EVAL + 1)),$((2 * N_EVAL))p" "$STANDIN/val.$l" | sacremoses -q -l "$l" detokenize > "$RAW_DIR/standin-test.$l.tmp"
    mv "$RAW_DIR/standin-test.$l.tmp" "$RAW_DIR/standin-test.$l"
  done
else
  # Kim & Rush 2016, section 5 (following Luong et al. 2015): WMT14 training data, newstest2012/2013 dev,
  # newstest2014 test, sentences up to 50 words, 50k most frequent words per language, teacher 4x1000,
  # students 2x500 / 2x300, SGD with learning rate 1 halved every epoch after epoch 5 (Luong: 10 epochs,
  # batch 128, gradient norm 5, dropout 0.3), beam 5, Word-KD alpha 0.5, Seq-Inter from the beam's K-best.
  : "${WORK:=$ROOT/work/wmt14_en_de}"
  : "${RAW_DIR:?set RAW_DIR to the directory with the WMT14 En-De text files (see recipes/wmt14_en_de/README.md)}"
  : "${TRAIN_CORPORA:=europarl-v7.de-en commoncrawl.de-en news-commentary-v9.de-en}"
  : "${DEV_SETS:=newstest2012 newstest2013}" "${TEST_SET:=newstest2014}"
  : "${SUBWORD:=word}" "${VOCAB:=50000}" "${MAX_LEN:=50}"
  : "${TEACHER_ARCH:=kd_lstm_4x1000}" "${STUDENT_ARCHS:=lstm=kd_lstm_2x500}"
  : "${TEACHER_EPOCHS:=10}" "${STUDENT_EPOCHS:=10}" "${LSTM_LR:=1.0}"
  : "${LSTM_OPTIM_ARGS:=--optimizer sgd --lr-scheduler fixed --force-anneal 5 --lr-shrink 0.5 --clip-norm 5}"
  : "${LSTM_BATCH_ARGS:=--batch-size 128 --max-tokens 12000}"
  : "${SPEED_INTERLEAVE:=0}"  # a dozen 50k-vocabulary models would not all fit in one GPU's memory
  : "${SEQ_INTER_LR:=0.1}" "${SEQ_INTER_EPOCHS:=2}" "${PRUNE_LR:=0.1}" "${PRUNE_EPOCHS:=2}"
  : "${NBEST:=5}" "${GEN_MAX_TOKENS:=20000}" "${THREADS:=8}" "${LATENCY_SENTENCES:=500}"
fi
: "${MAX_LEN:=50}"
RECIPE_TITLE="WMT14 En-De: sequence-level knowledge distillation (Kim & Rush 2016 setup)"
: "${RECIPE_COMMAND:=$( [ "${SMOKE:-0}" = 1 ] && printf 'SMOKE=1 ' )bash recipes/wmt14_en_de/run.sh}"  # shown in the results

files=()
for c in $TRAIN_CORPORA $DEV_SETS $TEST_SET; do files+=("$RAW_DIR/$c.en" "$RAW_DIR/$c.de"); done
missing=()
for f in "${files[@]}"; do [ -s "$f" ] || missing+=("$f"); done
[ ${#missing[@]} -eq 0 ] || die "missing WMT14 files (see recipes/wmt14_en_de/README.md): ${missing[*]}"

# concat PREFIX NAMES...: the named corpora one after the other, refusing misaligned pairs
concat() {
  local out=$1 c; shift
  for c in "$@"; do
    [ "$(wc -l < "$RAW_DIR/$c.en")" -eq "$(wc -l < "$RAW_DIR/$c.de")" ] \
      || die "$RAW_DIR/$c.en and $RAW_DIR/$c.de have different line counts: misaligned corpus"
  done
  for l in en de; do for c in "$@"; do cat "$RAW_DIR/$c.$l"; done > "$out.$l"; done
}
prepare_raw() {
  local raw=$WORK/raw
  # shellcheck disable=SC2086
  concat "$raw/train.all" $TRAIN_CORPORA
  # drop empty pairs and pairs longer than MAX_LEN words on either side (the paper's filter)
  paste "$raw/train.all.en" "$raw/train.all.de" \
    | awk -F '\t' -v m="$MAX_LEN" 'NF == 2 && $1 ~ /[^ ]/ && $2 ~ /[^ ]/ && split($1, a, " ") <= m && split($2, b, " ") <= m' \
    > "$raw/train.pairs"
  cut -f1 "$raw/train.pairs" > "$raw/train.en"
  cut -f2 "$raw/train.pairs" > "$raw/train.de"
  rm -f "$raw/train.pairs" "$raw"/train.all.*
  # shellcheck disable=SC2086
  concat "$raw/valid" $DEV_SETS
  concat "$raw/test" "$TEST_SET"
}

source "$ROOT/recipes/kd_pipeline.sh"
run_pipeline
