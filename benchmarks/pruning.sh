#!/usr/bin/env bash
# Pruning + compression benchmark on the demo's student (multi30k test2016, sacreBLEU):
#   1. class-blind pruning of the student to 50/80/90%, each retrained with translation_prune;
#   2. the 80% model as dense fp32 / sparse / sparse+int8: file size, decode words/s (greedy, batch 1 and
#      batched, on the first LATENCY_SENTENCES sentences), BLEU (all of test2016).
# Usage: WORK=demo_work STUDENT=student_word_kd bash benchmarks/pruning.sh   (after `make demo`)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/recipes/lib.sh"
WORK=${WORK:-$ROOT/demo_work}
STUDENT=${STUDENT:-student_nll}
STUDENT_ARCH=${STUDENT_ARCH:-kd_lstm_1x128}
RETRAIN_EPOCHS=${RETRAIN_EPOCHS:-1}
RATIOS=${RATIOS:-0.5 0.8 0.9}
THREADS=${THREADS:-2}
DATA=${DATA:-$ROOT/../shared/data/multi30k}
OUT=${OUT:-$ROOT/docs/results}
export OMP_NUM_THREADS=$THREADS
USER_DIR=$ROOT/fairseq_kd
BIN=$WORK/bin
P=$WORK/pruning
mkdir -p "$P" "$OUT"
require_file "$WORK/$STUDENT/checkpoint_best.pt" "(run make demo first)"

for r in $RATIOS; do
  dir=$P/r$r
  [ -s "$dir/checkpoint_best.pt" ] && continue
  fairseq-kd-prune "$WORK/$STUDENT/checkpoint_best.pt" --prune-ratio "$r" --output "$P/oneshot_r$r.pt" | tail -1
  fairseq-train "$BIN" --user-dir "$USER_DIR" --task translation_prune --prune-ratio "$r" --prune-scheme class-blind \
    --finetune-from-model "$P/oneshot_r$r.pt" --arch "$STUDENT_ARCH" --criterion label_smoothed_cross_entropy \
    --label-smoothing 0.1 --optimizer adam --lr 0.001 --max-tokens 1000 --max-epoch "$RETRAIN_EPOCHS" --cpu \
    --save-dir "$dir" --no-epoch-checkpoints --no-progress-bar --log-interval 100 > "$P/retrain_r$r.log" 2>&1
done
fairseq-kd-compress "$P/r0.8/checkpoint_best.pt" --sparse --output "$P/r0.8_sparse.pt"
fairseq-kd-compress "$P/r0.8/checkpoint_best.pt" --sparse --int8 --output "$P/r0.8_sparse_int8.pt"

speed() {  # common settings of every measurement
  fairseq-kd-speed "$BIN" --user-dir "$USER_DIR" --gen-subset test --cpu --threads "$THREADS" \
    --ref "$DATA/test2016.de" --post-process sentencepiece "$@"
}
# BLEU on all of test2016 (greedy and beam 5) and batched speed, for every model
speed --beam 1 5 --batch-size 64 --repeats 1 \
  --path "$WORK/$STUDENT/checkpoint_best.pt" --name "unpruned" \
  $(for r in $RATIOS; do echo --path "$P/r$r/checkpoint_best.pt" --name "pruned_$r"; done) \
  --path "$P/oneshot_r0.8.pt" --name "pruned_0.8_no_retrain" \
  --path "$P/r0.8_sparse.pt" --name "pruned_0.8_sparse" --path "$P/r0.8_sparse_int8.pt" --name "pruned_0.8_sparse_int8" \
  --output "$OUT/pruning_bleu.json"
fairseq-kd-table "$OUT/pruning_bleu.json" --reference unpruned --output-md "$OUT/pruning.md" --output-png "$OUT/pruning.png"
# the 80% model as dense fp32 / sparse / sparse+int8: greedy decoding at batch size 1 (latency) and 64
speed --beam 1 --batch-size 1 64 --max-sentences "${LATENCY_SENTENCES:-300}" --repeats 3 \
  --path "$P/r0.8/checkpoint_best.pt" --name "pruned_0.8_dense_fp32" \
  --path "$P/r0.8_sparse.pt" --name "pruned_0.8_sparse" --path "$P/r0.8_sparse_int8.pt" --name "pruned_0.8_sparse_int8" \
  --output "$OUT/compression_speed.json"
