#!/usr/bin/env bash
# IWSLT recipes with the sizes of Kim & Rush (2016)'s low-resource setting: teacher kd_lstm_2x500, student
# kd_lstm_2x100, the whole pipeline of recipes/kd_pipeline.sh. Two pairs (PAIR=):
#   de-en  IWSLT14 German->English in the layout of fairseq's examples/translation/prepare-iwslt14.sh:
#          IWSLT14_DIR/{train,valid,test}.{de,en}, tokenized, lowercased and BPE'd (`@@ `); used as given.
#   th-en  IWSLT15 Thai->English as in the paper: RAW_DIR with untokenized text files
#          {train,tst2010,tst2011,tst2012,tst2013}.{th,en} (dev: DEV_SETS, test: TEST_SETS); a joint
#          sentencepiece model replaces the paper's word vocabulary (Thai is written without spaces).
#   PAIR=de-en IWSLT14_DIR=.../iwslt14.tokenized.de-en bash recipes/iwslt/run.sh
#   PAIR=th-en RAW_DIR=/data/iwslt15-th-en bash recipes/iwslt/run.sh
#   SMOKE=1 bash recipes/iwslt/run.sh    de-en on a stand-in (multi30k slice, Moses-tokenized, lowercased)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/recipes/lib.sh"
: "${PAIR:=de-en}"
case $PAIR in de-en) SRC=de TGT=en ;; th-en) SRC=th TGT=en ;; *) die "unknown PAIR '$PAIR' (de-en or th-en)" ;; esac

if [ "${SMOKE:-0}" = 1 ]; then
  [ "$PAIR" = de-en ] || die "SMOKE=1 runs PAIR=de-en on a stand-in"
  : "${WORK:=$ROOT/work/iwslt_${PAIR}_smoke}"
  : "${STANDIN:=$ROOT/../shared/data/multi30k}" "${N_TRAIN:=500}" "${N_EVAL:=40}"
  : "${IWSLT14_DIR:=$WORK/standin_iwslt14}"
  smoke_defaults
  # the stand-in has prepare-iwslt14.sh's layout: Moses-tokenized, lowercased (no BPE: subword-nmt is not a dependency)
  mkdir -p "$IWSLT14_DIR"
  for l in de en; do
    [ -s "$IWSLT14_DIR/test.$l" ] && continue
    require_file "$STANDIN/train.$l" "(set STANDIN= to the multi30k directory)"
    head -n "$N_TRAIN" "$STANDIN/train.$l" | sacremoses -q -l "$l" tokenize | tr '[:upper:]' '[:lower:]' > "$IWSLT14_DIR/train.$l"
    head -n "$N_EVAL" "$STANDIN/val.$l" | sacremoses -q -l "$l" tokenize | tr '[:upper:]' '[:lower:]' > "$IWSLT14_DIR/valid.$l"
    head -n "$N_EVAL" "$STANDIN/test2016.$l" | sacremoses -q -l "$l" tokenize | tr '[:upper:]' '[:lower:]' > "$IWSLT14_DIR/test.$l.tmp"
    mv "$IWSLT14_DIR/test.$l.tmp" "$IWSLT14_DIR/test.$l"
  done
else
  # Kim & Rush 2016, section 5: IWSLT15 Th-En, dev tst2010/2011, test tst2012/2013, teacher 2x500 (better than
  # 4x1000 and 2x750 there), student 2x100, training as Luong et al. 2015 (SGD, learning rate 1, halved every
  # epoch after epoch 5; batch 128, gradient norm 5, dropout 0.3), beam 5, Word-KD alpha 0.5.
  : "${WORK:=$ROOT/work/iwslt_$PAIR}"
  : "${TEACHER_ARCH:=kd_lstm_2x500}" "${STUDENT_ARCHS:=lstm=kd_lstm_2x100}"
  : "${TEACHER_EPOCHS:=15}" "${STUDENT_EPOCHS:=15}" "${LSTM_LR:=1.0}"
  : "${LSTM_OPTIM_ARGS:=--optimizer sgd --lr-scheduler fixed --force-anneal 5 --lr-shrink 0.5 --clip-norm 5}"
  : "${LSTM_BATCH_ARGS:=--batch-size 128 --max-tokens 8000}"
  : "${SEQ_INTER_LR:=0.1}" "${SEQ_INTER_EPOCHS:=2}" "${PRUNE_LR:=0.1}" "${PRUNE_EPOCHS:=2}"
  : "${THREADS:=8}" "${LATENCY_SENTENCES:=500}"
fi
if [ "$PAIR" = de-en ]; then
  : "${IWSLT14_DIR:?set IWSLT14_DIR to the output of fairseq examples/translation/prepare-iwslt14.sh (iwslt14.tokenized.de-en)}"
  : "${SUBWORD:=given-bpe}"
  missing=()
  for s in train valid test; do for l in de en; do [ -s "$IWSLT14_DIR/$s.$l" ] || missing+=("$IWSLT14_DIR/$s.$l"); done; done
  [ ${#missing[@]} -eq 0 ] || die "missing IWSLT14 files (run fairseq's examples/translation/prepare-iwslt14.sh): ${missing[*]}"
  prepare_raw() {
    local s l
    for s in train valid test; do for l in de en; do cp "$IWSLT14_DIR/$s.$l" "$WORK/raw/$s.$l"; done; done
  }
else
  : "${RAW_DIR:?set RAW_DIR to the directory with the IWSLT15 Th-En text files (see recipes/iwslt/README.md)}"
  : "${DEV_SETS:=tst2010 tst2011}" "${TEST_SETS:=tst2012 tst2013}"
  : "${SUBWORD:=spm}" "${VOCAB:=16000}" "${SPM_COVERAGE:=0.9995}"
  missing=()
  for c in train $DEV_SETS $TEST_SETS; do for l in th en; do [ -s "$RAW_DIR/$c.$l" ] || missing+=("$RAW_DIR/$c.$l"); done; done
  [ ${#missing[@]} -eq 0 ] || die "missing IWSLT15 Th-En files (see recipes/iwslt/README.md): ${missing[*]}"
  prepare_raw() {
    local l c
    for l in th en; do
      cp "$RAW_DIR/train.$l" "$WORK/raw/train.$l"
      for c in $DEV_SETS; do cat "$RAW_DIR/$c.$l"; done > "$WORK/raw/valid.$l"
      for c in $TEST_SETS; do cat "$RAW_DIR/$c.$l"; done > "$WORK/raw/test.$l"
    done
  }
fi
RECIPE_TITLE="IWSLT $PAIR: sequence-level knowledge distillation (Kim & Rush 2016 low-resource sizes)"
: "${RECIPE_COMMAND:=$( [ "${SMOKE:-0}" = 1 ] && printf 'SMOKE=1 ' )PAIR=$PAIR bash recipes/iwslt/run.sh}"  # shown in the results

source "$ROOT/recipes/kd_pipeline.sh"
run_pipeline
